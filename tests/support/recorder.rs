//! A Didit stand-in that records the request headers it gets and answers
//! every request 404 (`{"detail":"Not found."}`): what the gateway sends
//! upstream, for the tests that check it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderMap, StatusCode};

/// A Didit stand-in that records request headers and answers 404.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<HeaderMap>>>);

impl Recorder {
    /// Serves on a free loopback port; its base URL.
    pub async fn start(&self) -> String {
        let seen = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(headers);
                (
                    StatusCode::NOT_FOUND,
                    [("content-type", "application/json")],
                    r#"{"detail":"Not found."}"#,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// The headers of every request so far, taken.
    pub fn take(&self) -> Vec<HeaderMap> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
