//! `ionroller config`: the commented template, saving a JSONC file as the next version,
//! the current config, and every saved version.

use anyhow::Context;

use crate::args::ConfigCommand;
use crate::client::Client;
use crate::jsonc;
use crate::output::{self, print};
use crate::render;

/// Every setting, commented; `SERVICE` stands for the service's name.
pub const TEMPLATE: &str = include_str!("../../../../examples/template.jsonc");

pub async fn run(client: &Client, command: ConfigCommand) -> anyhow::Result<i32> {
    match command {
        ConfigCommand::Init { service } => {
            print(&TEMPLATE.replace("SERVICE", &service))?;
            Ok(0)
        }
        ConfigCommand::Set { service, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            // The server takes plain JSON and checks every field itself (unknown ones too).
            let json =
                jsonc::to_json(&text).with_context(|| format!("parse {}", file.display()))?;
            let answer = client
                .put_json_text(&format!("/v1/services/{service}/config"), json)
                .await?;
            output::answer(&answer, || {
                format!(
                    "Saved config version {} of {service}\n",
                    answer["config_version"]
                )
            })?;
            Ok(0)
        }
        ConfigCommand::Get { service } => {
            let answer = client
                .get(&format!("/v1/services/{service}/config"))
                .await?;
            // As text, the config alone (ready to edit and `config set`); as JSON, the answer
            // with its version and who saved it.
            let config = serde_json::to_string_pretty(&answer["config"])?;
            output::answer(&answer, || config + "\n")?;
            Ok(0)
        }
        ConfigCommand::History { service } => {
            let answer = client
                .get(&format!("/v1/services/{service}/configs"))
                .await?;
            output::answer(&answer, || {
                answer["configs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| render::config_version_line(c) + "\n")
                    .collect()
            })?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_template_is_valid_and_ready_for_aws() {
        let json = jsonc::to_json(&TEMPLATE.replace("SERVICE", "hello"))
            .unwrap_or_else(|e| panic!("the template does not parse: {e}"));
        let config = ionroller_shared::config::parse_service_config(&json)
            .unwrap_or_else(|e| panic!("the template is not a valid config: {e:?}"));
        let problems = ionroller_aws::spec::check_config(&config);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn the_template_s_commented_secret_is_a_valid_reference() {
        let line = TEMPLATE
            .lines()
            .find(|l| l.trim_start().starts_with("// \"secrets\""))
            .expect("the template shows secrets");
        let uncommented = TEMPLATE
            .replace(line, line.replacen("// ", "", 1).as_str())
            .replace("SERVICE", "hello");
        let json = jsonc::to_json(&uncommented).expect("parses");
        let config = ionroller_shared::config::parse_service_config(&json)
            .unwrap_or_else(|e| panic!("the secret is refused: {e:?}"));
        assert_eq!(config.secrets.len(), 1);
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../../examples/hello.json");
        let json = jsonc::to_json(text).expect("hello.json parses");
        assert!(ionroller_shared::config::parse_service_config(&json).is_ok());
    }
}
