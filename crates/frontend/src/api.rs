//! Calls to Herald's HTTP API, with the signed-in user's credential. Errors are the server's
//! message, or what went wrong on the way.

use std::cell::RefCell;

use gloo_net::http::{Request, RequestBuilder, Response};
use herald_protocol::api::{
    ClientInfo, DevTokenRequest, DevUser, ErrorBody, NotificationPage, OrderReceipt,
    PublishRequest, PublishResponse, SendRequest, SendResponse, TokenResponse,
};
use herald_protocol::payloads::NotificationRead;
use serde::de::DeserializeOwned;

thread_local! {
    /// The token every request carries; the page is single-threaded.
    static TOKEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Sets (or clears) the credential sent with every request from now on.
pub fn set_token(token: Option<String>) {
    TOKEN.with(|slot| *slot.borrow_mut() = token);
}

/// The credential in use, for the event stream's URL.
pub fn token() -> Option<String> {
    TOKEN.with(|slot| slot.borrow().clone())
}

fn authorized(request: RequestBuilder) -> RequestBuilder {
    match token() {
        Some(token) => request.header("Authorization", &format!("Bearer {token}")),
        None => request,
    }
}

async fn answer<T: DeserializeOwned>(
    response: Result<Response, gloo_net::Error>,
) -> Result<T, String> {
    let response = response.map_err(|err| format!("the request failed: {err}"))?;
    if response.ok() {
        return response
            .json()
            .await
            .map_err(|err| format!("unexpected answer: {err}"));
    }
    Err(failure(response).await)
}

/// The server's error message of a failed response.
async fn failure(response: Response) -> String {
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => format!("{} ({status})", body.error.message),
        Err(_) => format!("the server answered {status}"),
    }
}

fn path_segment(text: &str) -> String {
    String::from(web_sys::js_sys::encode_uri_component(text))
}

pub async fn publish(request: &PublishRequest) -> Result<PublishResponse, String> {
    let request = authorized(Request::post("/api/publish"))
        .json(request)
        .map_err(|err| err.to_string())?;
    answer(request.send().await).await
}

pub async fn broadcast(request: &SendRequest) -> Result<SendResponse, String> {
    let request = authorized(Request::post("/api/broadcast"))
        .json(request)
        .map_err(|err| err.to_string())?;
    answer(request.send().await).await
}

pub async fn clients() -> Result<Vec<ClientInfo>, String> {
    answer(authorized(Request::get("/api/clients")).send().await).await
}

/// Who receives `topic` now.
pub async fn presence(topic: &str) -> Result<herald_protocol::api::Presence, String> {
    let url = format!("/api/topics/{}/presence", path_segment(topic));
    answer(authorized(Request::get(&url)).send().await).await
}

pub async fn close_client(client_id: &str) -> Result<(), String> {
    let url = format!("/api/clients/{}", path_segment(client_id));
    let response = authorized(Request::delete(&url))
        .send()
        .await
        .map_err(|err| format!("the request failed: {err}"))?;
    if response.ok() {
        return Ok(());
    }
    Err(failure(response).await)
}

/// The demo users, or `None` when the server is not in development mode.
pub async fn dev_users() -> Option<Vec<DevUser>> {
    answer(Request::get("/api/dev/users").send().await)
        .await
        .ok()
}

/// A development credential for a demo user.
pub async fn dev_token(user: &str) -> Result<TokenResponse, String> {
    let request = Request::post("/api/dev/token")
        .json(&DevTokenRequest {
            user: user.to_owned(),
        })
        .map_err(|err| err.to_string())?;
    answer(request.send().await).await
}

/// Who the current credential names.
pub async fn me() -> Result<herald_protocol::api::Identity, String> {
    answer(authorized(Request::get("/api/me")).send().await).await
}

/// The newest page of the inbox.
pub async fn notifications() -> Result<NotificationPage, String> {
    answer(
        authorized(Request::get("/api/notifications?limit=50"))
            .send()
            .await,
    )
    .await
}

pub async fn mark_read(id: &str) -> Result<NotificationRead, String> {
    let url = format!("/api/notifications/{}/read", path_segment(id));
    answer(authorized(Request::post(&url)).send().await).await
}

pub async fn mark_all_read() -> Result<NotificationRead, String> {
    answer(
        authorized(Request::post("/api/notifications/read-all"))
            .send()
            .await,
    )
    .await
}

pub async fn place_order() -> Result<OrderReceipt, String> {
    answer(authorized(Request::post("/demo/orders")).send().await).await
}

/// Asks the chat demo for an answer, written into a response stream; its id and URL.
pub async fn demo_answer(
    prompt: &str,
    delay_ms: u64,
) -> Result<herald_protocol::streams::StreamCreated, String> {
    let request = Request::post("/demo/chat")
        .json(&serde_json::json!({"prompt": prompt, "delay_ms": delay_ms}))
        .map_err(|err| format!("cannot encode the question: {err}"))?;
    answer(request.send().await).await
}
