//! The HTTP client of the roller's and trail's APIs: the bearer token it proves itself with,
//! how a refusal becomes one readable error, and server-sent event streams. It knows no
//! command.

use std::path::Path;

use anyhow::{bail, Context};
use futures::{Stream, StreamExt};
use serde_json::Value;
use sse_stream::{Sse, SseByteStream};

use crate::exit::{self, Failure};

pub struct Client {
    base: String,
    /// "the roller" or "trail": named when the server cannot be reached.
    name: &'static str,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer`; the server records who it proves, not who we say.
    token: Option<String>,
}

/// The HTTP client both servers are reached with: https through rustls, trusting the system's
/// CAs, or only those in `ca_cert` when given (as `curl --cacert` and kubectl's
/// `certificate-authority` do: a private CA is not mixed with the public ones).
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = ionroller_auth::tls::http_client();
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("read the CA certificates in {}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
        if certificates.is_empty() {
            bail!(
                "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            );
        }
        builder = builder.tls_certs_only(certificates);
    }
    builder.build().context("build the HTTP client")
}

impl Client {
    pub fn new(
        base: &str,
        name: &'static str,
        http: reqwest::Client,
        token: Option<String>,
    ) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            name,
            http,
            token,
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` as the actor; a refusal becomes an error with the server's message and
    /// each problem it names.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = self.authorized(request).send().await.map_err(|e| {
            Failure::new(
                exit::UNREACHABLE,
                format!(
                    "could not reach {} at {} (is `ionroller up` running? set --server or \
                     IONROLLER_URL): {e}",
                    self.name, self.base
                ),
            )
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            Failure::new(
                exit::UNREACHABLE,
                format!("read the answer of {}: {e}", self.name),
            )
        })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            return Err(Failure::new(code_for(status), refusal(status, &body)).into());
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    /// GET with `query` encoded as the URL's query string.
    pub async fn get_query(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// PUT of a JSON document already in text form, so the server sees exactly that text.
    pub async fn put_json_text(&self, path: &str, body: String) -> anyhow::Result<Value> {
        self.send(
            self.http
                .put(self.url(path))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// The server-sent events at `path`, resuming after `last_event_id` when given.
    pub async fn events(
        &self,
        path: &str,
        last_event_id: Option<String>,
    ) -> anyhow::Result<impl Stream<Item = Result<Sse, sse_stream::Error>>> {
        let mut request = self.http.get(self.url(path));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = self.authorized(request).send().await.map_err(|e| {
            Failure::new(
                exit::UNREACHABLE,
                format!("could not reach {} at {}: {e}", self.name, self.base),
            )
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(Failure::new(code_for(status), refusal(status, &body)).into());
        }
        // Blocks without data (a bare `retry:` or `id:`) carry nothing to show.
        Ok(SseByteStream::new(response.bytes_stream())
            .filter(|e| std::future::ready(!matches!(e, Ok(sse) if sse.data.is_none()))))
    }
}

/// A refusal (4xx) is the server's verdict on the request; a 5xx says it cannot serve now.
fn code_for(status: reqwest::StatusCode) -> i32 {
    if status.is_client_error() {
        exit::REFUSED
    } else {
        exit::UNREACHABLE
    }
}

/// "STATUS: message", then one line per problem the server named, then what to do about it
/// as a command of this CLI (the server words its messages for every client).
fn refusal(status: reqwest::StatusCode, body: &Value) -> String {
    let message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    let mut out = format!("{status}: {message}");
    for p in body["problems"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  - {}: {}",
            p["field"].as_str().unwrap_or("?"),
            p["problem"].as_str().unwrap_or("?")
        ));
    }
    if let Some(hint) = body["error"].as_str().and_then(hint) {
        out.push_str(&format!("\n  hint: {hint}"));
    }
    out
}

/// The command that answers a refusal of the roller's rules (its `error` code on a 409).
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "no_config" => "save one with `ionroller config set SERVICE FILE` (`ionroller config init SERVICE` prints a template)",
        "alarms_firing" => "run the release again with --override-alarms to release anyway (recorded in the audit)",
        "no_rollout" => "`ionroller status SERVICE` shows what the service is doing",
        "promote_while_paused" => "`ionroller resume SERVICE`, then `ionroller promote SERVICE`",
        "not_paused" => "`ionroller pause SERVICE` pauses a rollout in progress",
        "load_balancer_owned" => "name this service's own load balancer in endpoint.load_balancer.name, then `ionroller config set SERVICE FILE`",
        "never_served" => "`ionroller release SERVICE VERSION` ships it through the rollout policy; `ionroller history SERVICE` lists what served",
        "nothing_to_roll_back_to" => "`ionroller history SERVICE` lists what served",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refusal_names_the_message_and_each_problem() {
        let body = json!({
            "message": "invalid config",
            "problems": [
                { "field": "rollout.steps", "problem": "must end at 100" },
                { "field": "image", "problem": "is empty" }
            ]
        });
        assert_eq!(
            refusal(reqwest::StatusCode::BAD_REQUEST, &body),
            "400 Bad Request: invalid config\n  - rollout.steps: must end at 100\n  - image: is empty"
        );
    }

    #[test]
    fn a_refusal_of_the_rules_ends_with_the_command_that_answers_it() {
        let body = json!({
            "error": "alarms_firing",
            "message": "alarm(s) hello-5xx already in ALARM; fix them first, or release with the alarms overridden (the override is recorded)"
        });
        let text = refusal(reqwest::StatusCode::CONFLICT, &body);
        assert!(
            text.ends_with("\n  hint: run the release again with --override-alarms to release anyway (recorded in the audit)"),
            "{text}"
        );
        // A code this build does not know adds nothing.
        let body = json!({ "error": "something_new", "message": "no" });
        assert_eq!(
            refusal(reqwest::StatusCode::CONFLICT, &body),
            "409 Conflict: no"
        );
    }

    #[test]
    fn a_refusal_without_a_message_shows_the_body() {
        let body = Value::String("upstream timed out".into());
        assert_eq!(
            refusal(reqwest::StatusCode::BAD_GATEWAY, &body),
            "502 Bad Gateway: \"upstream timed out\""
        );
    }
}
