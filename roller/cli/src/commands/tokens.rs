//! `ionroller whoami` and `ionroller token create|list|revoke`.

use serde_json::{json, Value};

use crate::args::TokenCommand;
use crate::client::Client;
use crate::output::{self, line};

pub async fn whoami(roller: &Client) -> anyhow::Result<i32> {
    let me = roller.get("/v1/whoami").await?;
    output::answer(&me, || {
        let mut text = format!("{}\n", me["actor"].as_str().unwrap_or("?"));
        for grant in me["grants"].as_array().into_iter().flatten() {
            text.push_str(&format!("  {}\n", grant_text(grant)));
        }
        if me["grants"].as_array().is_none_or(|g| g.is_empty()) {
            text.push_str("  no grants: this identity may do nothing\n");
        }
        text
    })?;
    Ok(0)
}

/// A link to the console at `server`, signed in with `token`: it goes in the URL's fragment,
/// which the browser keeps to itself; the page moves it to the tab's sessionStorage and
/// removes it from the address bar. Checked first, so a refused token is said here.
pub async fn console(roller: &Client, server: &str, token: Option<String>) -> anyhow::Result<i32> {
    let Some(token) = token else {
        anyhow::bail!(
            "no token to sign in with: pass --token or set IONROLLER_TOKEN (or run this on the \
             server's machine, where `ionroller up` wrote its admin token)"
        );
    };
    let me = roller.get("/v1/whoami").await?;
    line(format!("{}/#token={token}", server.trim_end_matches('/')))?;
    line(format!(
        "  signs in as {} (a secret: do not paste it where others can read it)",
        me["actor"].as_str().unwrap_or("?")
    ))?;
    Ok(0)
}

pub async fn run(roller: &Client, command: TokenCommand) -> anyhow::Result<i32> {
    match command {
        TokenCommand::Create {
            name,
            role,
            services,
            expires,
        } => {
            let expires_at = expires
                .map(|text| crate::time_args::expiry_arg(&text, chrono::Utc::now()))
                .transpose()?;
            let body = json!({
                "name": name,
                "role": role,
                "services": services,
                "expires_at": expires_at,
            });
            let created = roller.post("/v1/tokens", &body).await?;
            output::answer(&created, || {
                format!(
                    "created {}\nits secret, shown this once (send it as IONROLLER_TOKEN or \
                     --token):\n{}\n",
                    token_text(&created["token"]),
                    created["secret"].as_str().unwrap_or("?")
                )
            })?;
        }
        TokenCommand::List => {
            let list = roller.get("/v1/tokens").await?;
            output::answer(&list, || {
                list["tokens"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|token| token_text(token) + "\n")
                    .collect()
            })?;
        }
        TokenCommand::Revoke { name } => {
            let revoked = roller.delete(&format!("/v1/tokens/{name}")).await?;
            output::answer(&revoked, || format!("revoked {}\n", token_text(&revoked)))?;
        }
    }
    Ok(0)
}

fn grant_text(grant: &Value) -> String {
    let services: Vec<&str> = grant["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{} on {}",
        grant["role"].as_str().unwrap_or("?"),
        if services.is_empty() {
            "every service".to_string()
        } else {
            services.join(", ")
        }
    )
}

/// One line per token: name, state, grant, creator, expiry. Never a secret: the server has none.
fn token_text(token: &Value) -> String {
    let text = |k: &str| token[k].as_str().unwrap_or("").to_string();
    let mut out = format!(
        "{} [{}] {}, created by {} at {}",
        text("name"),
        text("state"),
        grant_text(token),
        text("created_by"),
        text("created_at"),
    );
    if let Some(at) = token["expires_at"].as_str() {
        out.push_str(&format!(", expires {at}"));
    }
    if let Some(at) = token["revoked_at"].as_str() {
        out.push_str(&format!(", revoked {at}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_line_names_its_grant_and_state() {
        let token = json!({
            "name": "ci", "state": "active", "role": "deployer", "services": ["payments-*"],
            "created_by": "admin via token 1a2b3c4d", "created_at": "2026-11-30T10:00:00Z",
            "expires_at": "2027-02-28T10:00:00Z", "revoked_at": null
        });
        assert_eq!(
            token_text(&token),
            "ci [active] deployer on payments-*, created by admin via token 1a2b3c4d at \
             2026-11-30T10:00:00Z, expires 2027-02-28T10:00:00Z"
        );
    }
}
