//! Calls to Herald's HTTP API. Errors are the server's message, or what went wrong on the way.

use gloo_net::http::{Request, Response};
use herald_protocol::api::{
    ClientInfo, ErrorBody, PublishRequest, PublishResponse, SendRequest, SendResponse,
};
use serde::de::DeserializeOwned;

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

pub async fn publish(request: &PublishRequest) -> Result<PublishResponse, String> {
    let request = Request::post("/api/publish")
        .json(request)
        .map_err(|err| err.to_string())?;
    answer(request.send().await).await
}

pub async fn broadcast(request: &SendRequest) -> Result<SendResponse, String> {
    let request = Request::post("/api/broadcast")
        .json(request)
        .map_err(|err| err.to_string())?;
    answer(request.send().await).await
}

pub async fn clients() -> Result<Vec<ClientInfo>, String> {
    answer(Request::get("/api/clients").send().await).await
}

pub async fn close_client(client_id: &str) -> Result<(), String> {
    let url = format!(
        "/api/clients/{}",
        String::from(web_sys::js_sys::encode_uri_component(client_id))
    );
    let response = Request::delete(&url)
        .send()
        .await
        .map_err(|err| format!("the request failed: {err}"))?;
    if response.ok() {
        return Ok(());
    }
    Err(failure(response).await)
}
