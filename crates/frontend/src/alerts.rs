//! The browser's Notification API: ask once, then show new inbox items as system notifications
//! that open their url when clicked.

use herald_protocol::payloads::Notification;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{NotificationOptions, NotificationPermission};

/// Whether the page may show notifications: `granted`, `denied`, `default` (not asked yet), or
/// `unsupported`.
pub fn permission() -> &'static str {
    let supported = web_sys::js_sys::Reflect::has(
        &web_sys::js_sys::global(),
        &wasm_bindgen::JsValue::from_str("Notification"),
    )
    .unwrap_or(false);
    if !supported {
        return "unsupported";
    }
    match web_sys::Notification::permission() {
        NotificationPermission::Granted => "granted",
        NotificationPermission::Denied => "denied",
        _ => "default",
    }
}

/// Asks the person for permission; `answered` receives the new permission.
pub fn ask(answered: impl FnOnce(&'static str) + 'static) {
    let Ok(promise) = web_sys::Notification::request_permission() else {
        answered(permission());
        return;
    };
    let callback = Closure::once(move |_: wasm_bindgen::JsValue| answered(permission()));
    let _ = promise.then(&callback);
    // Called once by the promise, after this function returns.
    callback.forget();
}

/// Shows `notification` if allowed; a click focuses the page and opens its url.
pub fn show(notification: &Notification) {
    if permission() != "granted" {
        return;
    }
    let options = NotificationOptions::new();
    options.set_body(&notification.body);
    options.set_tag(&format!("herald-{}", notification.id));
    let Ok(shown) = web_sys::Notification::new_with_options(&notification.title, &options) else {
        return;
    };
    let url = notification.url.clone();
    let click = Closure::<dyn FnMut()>::new(move || {
        let window = leptos::prelude::window();
        let _ = window.focus();
        if let Some(url) = &url {
            let _ = window.open_with_url(url);
        }
    });
    shown.set_onclick(Some(click.as_ref().unchecked_ref()));
    // The notification lives beyond this call; so must its handler.
    click.forget();
}
