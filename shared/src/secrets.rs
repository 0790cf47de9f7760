//! Secrets in a config: references to AWS Secrets Manager secrets and SSM Parameter Store
//! parameters (which Elastic Beanstalk resolves itself when it starts an instance, so that
//! ionroller never holds the value), and the check that refuses plain values that look like
//! credentials.
//!
//! The log keeps every config forever and copies it into each `create-environment` intent, so
//! a credential written into `env` would be readable by anyone who can read the log, trail's
//! audit or a config's history, for as long as the log exists. Both functions here are pure
//! and are applied to a person's config only (`ServiceConfig::validate`), never when stored
//! configs are decoded.

use std::fmt;

/// Elastic Beanstalk's option namespace for environment variables whose value is fetched from
/// Secrets Manager or Parameter Store while an instance boots: the option name is the
/// variable's name, the value the secret's or parameter's ARN. Supported by platform versions
/// released on or after 26 March 2025; the instances' profile needs
/// `secretsmanager:GetSecretValue` or `ssm:GetParameter` on it (and `kms:Decrypt` for a
/// customer managed key).
pub const SECRETS_NAMESPACE: &str = "aws:elasticbeanstalk:application:environmentsecrets";

/// Where a secret reference points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretStore {
    /// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf[:json-key]`.
    SecretsManager,
    /// `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`.
    ParameterStore,
}

/// The longest secret name Secrets Manager allows.
const MAX_SECRET_NAME: usize = 512;
/// The longest parameter name Parameter Store allows (with its path).
const MAX_PARAMETER_NAME: usize = 1011;

/// The shape a reference must have, for problems shown to people.
pub const SECRET_REF_SHAPES: &str = "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf (the full ARN, with the 6 characters Secrets Manager appends; optionally :JSON_KEY after it) or arn:aws:ssm:REGION:ACCOUNT:parameter/NAME";

/// Checks that `arn` is the ARN of a Secrets Manager secret or of an SSM parameter, as Elastic
/// Beanstalk's environment secrets take it; the error says what is wrong (never repeating the
/// text, which a person may have pasted a secret into by mistake).
pub fn parse_secret_ref(arn: &str) -> Result<SecretStore, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return Err(format!("is not an ARN; write {SECRET_REF_SHAPES}"));
    };
    if prefix != "arn" {
        return Err(format!("is not an ARN; write {SECRET_REF_SHAPES}"));
    }
    // aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, …
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest.split('-').all(|w| {
                    !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                })
        });
    if !partition_ok {
        return Err(format!(
            "names the partition {partition:?}; an ARN's partition is aws, aws-cn, aws-us-gov, …"
        ));
    }
    let region_ok = region.split('-').count() >= 3
        && region.split('-').all(|w| !w.is_empty())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err(format!(
            "names the region {region:?}; a reference names its region, like us-east-1"
        ));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "must name the 12-digit account that holds the secret or parameter".to_string(),
        );
    }
    match service {
        "secretsmanager" => {
            let Some(rest) = resource.strip_prefix("secret:") else {
                return Err(format!(
                    "a Secrets Manager ARN continues with secret:NAME-AbCdEf; write {SECRET_REF_SHAPES}"
                ));
            };
            let (name, json_key) = match rest.split_once(':') {
                Some((name, key)) => (name, Some(key)),
                None => (rest, None),
            };
            let suffix_ok = name.rsplit_once('-').is_some_and(|(base, suffix)| {
                !base.is_empty()
                    && suffix.len() == 6
                    && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if !suffix_ok {
                return Err("must be a secret's full ARN, ending in the hyphen and 6 characters Secrets Manager appends to its name (NAME-AbCdEf), as the console and `aws secretsmanager describe-secret` show it".to_string());
            }
            let chars_ok = name.len() <= MAX_SECRET_NAME + 7
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
            if !chars_ok {
                return Err(format!(
                    "a secret's name is 1 to {MAX_SECRET_NAME} letters, digits and / _ + = . @ -"
                ));
            }
            if let Some(key) = json_key {
                // Elastic Beanstalk reads a top-level JSON key after the ARN; the key itself
                // cannot hold a colon (EB would silently use only the part before it).
                if key.is_empty() || key.contains(':') {
                    return Err("after the secret's ARN, :KEY names one top-level JSON key (not empty, without ':')".to_string());
                }
            }
            Ok(SecretStore::SecretsManager)
        }
        "ssm" => {
            let Some(name) = resource.strip_prefix("parameter/") else {
                return Err(format!(
                    "an SSM ARN continues with parameter/NAME; write {SECRET_REF_SHAPES}"
                ));
            };
            let ok = !name.is_empty()
                && name.len() <= MAX_PARAMETER_NAME
                && name.split('/').all(|level| !level.is_empty())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b));
            if !ok {
                return Err(format!("a parameter's name is 1 to {MAX_PARAMETER_NAME} letters, digits and _ . - with / between its levels (the ARN of /a/b ends in parameter/a/b); no version or label selector"));
            }
            Ok(SecretStore::ParameterStore)
        }
        other => Err(format!(
            "is an ARN of {other:?}; a secret reference is {SECRET_REF_SHAPES}"
        )),
    }
}

/// What a value that looks like a credential looks like. Its `Display` is a phrase for
/// people and never contains the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `AKIA…` (long-term) or `ASIA…` (temporary): 20 uppercase letters and digits.
    AwsAccessKeyId,
    /// 40 characters of base64 with mixed case and digits, under a name that says AWS.
    AwsSecretAccessKey,
    /// A PEM block `-----BEGIN … PRIVATE KEY-----`.
    PrivateKey,
    /// A signed JSON Web Token: `eyJ…` header, `.`, `eyJ…` payload, `.`, signature.
    Jwt,
    /// An HTTP `Authorization` value: `Bearer <token>`.
    BearerToken,
    /// A token whose issuer marks it with a prefix (`ghp_`, `xoxb-`, `sk_live_`, …).
    PrefixedToken(&'static str),
    /// A URL carrying a password in its user info: `scheme://user:password@host`.
    UrlPassword,
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::AwsAccessKeyId => f.write_str("an AWS access key id (AKIA… or ASIA…)"),
            Credential::AwsSecretAccessKey => {
                f.write_str("an AWS secret access key (40 characters of base64 under an AWS name)")
            }
            Credential::PrivateKey => {
                f.write_str("a PEM private key (-----BEGIN … PRIVATE KEY-----)")
            }
            Credential::Jwt => f.write_str("a signed JSON Web Token (eyJ….eyJ….…)"),
            Credential::BearerToken => f.write_str("a bearer token (\"Bearer …\")"),
            Credential::PrefixedToken(prefix) => write!(f, "an API token ({prefix}…)"),
            Credential::UrlPassword => {
                f.write_str("a URL with a password in it (scheme://user:password@host)")
            }
        }
    }
}

/// Token prefixes that their issuers reserve for secrets, with the least number of token
/// characters that must follow (so that the prefix alone, say in documentation, passes).
const TOKEN_PREFIXES: &[(&str, usize)] = &[
    // GitHub: personal, OAuth, user-to-server, server-to-server and refresh tokens (36
    // characters follow), and fine-grained personal tokens.
    ("ghp_", 36),
    ("gho_", 36),
    ("ghu_", 36),
    ("ghs_", 36),
    ("ghr_", 36),
    ("github_pat_", 22),
    // GitLab personal access tokens.
    ("glpat-", 20),
    // Slack bot, user, app-level and refresh tokens.
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxa-", 10),
    ("xoxr-", 10),
    // Stripe live secret and restricted keys (test keys, `sk_test_`, move no money).
    ("sk_live_", 16),
    ("rk_live_", 16),
    // npm access tokens.
    ("npm_", 36),
];

/// Whether `value`, set under `name`, looks like a credential, and which kind.
///
/// Only shapes that ordinary configuration values do not take are matched, so that false
/// positives stay rare: fixed issuer prefixes with a long random tail, AWS key ids with their
/// exact length and alphabet, PEM private key headers, JWTs (two base64 JSON objects), an
/// `Authorization` header's `Bearer` form, and a password inside a URL. A bare 40-character
/// base64 string counts as an AWS secret key only under a name containing `AWS` and only with
/// upper case, lower case and digits in it (a hex digest or a word is not one). Random
/// passwords with no such shape are not found: those are what `secrets` is for.
pub fn looks_like_credential(name: &str, value: &str) -> Option<Credential> {
    if value.contains("-----BEGIN") && value.contains("PRIVATE KEY-----") {
        return Some(Credential::PrivateKey);
    }
    let trimmed = value.trim_start();
    // `get`, not slicing: the seventh byte may fall inside a character.
    if let (Some(scheme), Some(token)) = (trimmed.get(..7), trimmed.get(7..)) {
        let token = token.trim();
        if scheme.eq_ignore_ascii_case("bearer ")
            && token.len() >= 16
            && !token.contains(char::is_whitespace)
        {
            return Some(Credential::BearerToken);
        }
    }
    if url_password(value) {
        return Some(Credential::UrlPassword);
    }
    // Words of letters and digits: an access key id is one of exactly 20.
    for word in value.split(|c: char| !c.is_ascii_alphanumeric()) {
        if word.len() == 20
            && (word.starts_with("AKIA") || word.starts_with("ASIA"))
            && word
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Some(Credential::AwsAccessKeyId);
        }
    }
    // Words that a token or a JWT may be made of.
    for word in value.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        if is_jwt(word) {
            return Some(Credential::Jwt);
        }
        for (prefix, tail) in TOKEN_PREFIXES {
            if let Some(rest) = word.strip_prefix(prefix) {
                let run = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
                    .count();
                if run >= *tail {
                    return Some(Credential::PrefixedToken(prefix));
                }
            }
        }
    }
    if name.to_ascii_uppercase().contains("AWS") {
        for word in value.split(|c: char| !(c.is_ascii_alphanumeric() || c == '/' || c == '+')) {
            if word.len() == 40
                && word.bytes().any(|b| b.is_ascii_uppercase())
                && word.bytes().any(|b| b.is_ascii_lowercase())
                && word.bytes().any(|b| b.is_ascii_digit())
            {
                return Some(Credential::AwsSecretAccessKey);
            }
        }
    }
    None
}

/// A JWS in compact form: three dot-separated base64url parts, the first two JSON objects
/// (which base64-encode to `eyJ`).
fn is_jwt(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts[0].len() >= 10
        && parts[1].len() >= 10
        && parts[0].starts_with("eyJ")
        && parts[1].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Whether `value` holds a URL with a non-empty password in its user info.
fn url_password(value: &str) -> bool {
    let mut rest = value;
    while let Some(at) = rest.find("://") {
        let after = &rest[at + 3..];
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        if let Some((userinfo, _host)) = authority.rsplit_once('@') {
            if userinfo
                .split_once(':')
                .is_some_and(|(_, password)| !password.is_empty())
            {
                return true;
            }
        }
        rest = after;
    }
    false
}

/// The hint that ends a refused value's problem: where the value should live instead.
pub fn use_a_reference_instead(name: &str) -> String {
    format!(
        "the log keeps every config forever, so store the value in AWS Secrets Manager or SSM Parameter Store and reference it instead: \"secrets\": {{\"{name}\": \"arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf\"}} (Elastic Beanstalk fetches it when an instance starts)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbCd12";
    const PARAMETER: &str = "arn:aws:ssm:eu-west-1:111122223333:parameter/prod/db/password";

    #[test]
    fn secret_references_are_secrets_manager_or_parameter_store_arns() {
        for (arn, store) in [
            (SECRET, SecretStore::SecretsManager),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:mysecret-AbCd12:password",
                SecretStore::SecretsManager,
            ),
            (
                "arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:a_b+c=d.e@f-123456",
                SecretStore::SecretsManager,
            ),
            (
                "arn:aws-us-gov:secretsmanager:us-gov-west-1:111122223333:secret:x-abcdef",
                SecretStore::SecretsManager,
            ),
            (PARAMETER, SecretStore::ParameterStore),
            (
                "arn:aws:ssm:us-east-1:111122223333:parameter/myparam",
                SecretStore::ParameterStore,
            ),
        ] {
            assert_eq!(parse_secret_ref(arn), Ok(store), "{arn}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_a_reason_that_does_not_repeat_it() {
        for (bad, why) in [
            ("hunter2", "not an ARN"),
            ("", "not an ARN"),
            (
                "urn:aws:ssm:us-east-1:111122223333:parameter/x",
                "not an ARN",
            ),
            (
                "arn:azure:ssm:us-east-1:111122223333:parameter/x",
                "partition",
            ),
            ("arn:aws:ssm:moon:111122223333:parameter/x", "region"),
            ("arn:aws:ssm::111122223333:parameter/x", "region"),
            ("arn:aws:ssm:us-east-1:1234:parameter/x", "12-digit"),
            ("arn:aws:ssm:us-east-1::parameter/aws/service/x", "12-digit"),
            (
                "arn:aws:s3:us-east-1:111122223333:bucket/x",
                "is an ARN of \"s3\"",
            ),
            (
                "arn:aws:ssm:us-east-1:111122223333:document/x",
                "parameter/NAME",
            ),
            (
                "arn:aws:ssm:us-east-1:111122223333:parameter/",
                "parameter's name",
            ),
            (
                "arn:aws:ssm:us-east-1:111122223333:parameter/a//b",
                "parameter's name",
            ),
            (
                "arn:aws:ssm:us-east-1:111122223333:parameter/a:3",
                "parameter's name",
            ),
            (
                "arn:aws:ssm:us-east-1:111122223333:parameter/a b",
                "parameter's name",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:key/x-AbCd12",
                "secret:NAME",
            ),
            // A partial ARN (no random suffix) is ambiguous: Secrets Manager may match another
            // secret whose name starts the same way.
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db",
                "full ARN",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:-AbCd12",
                "full ARN",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCd1!",
                "full ARN",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:d b-AbCd12",
                "letters",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCd12:",
                "JSON key",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbCd12:a:b",
                "JSON key",
            ),
        ] {
            let problem = parse_secret_ref(bad).expect_err(bad);
            assert!(problem.contains(why), "{bad}: {problem}");
            if bad.len() > 8 {
                assert!(!problem.contains(bad), "{bad} is repeated: {problem}");
            }
        }
    }

    #[test]
    fn credentials_are_found_by_their_shape() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----MIIEpAIBAAKCAQEA-----END RSA PRIVATE KEY-----";
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        for (name, value, found) in [
            ("KEY", "AKIAIOSFODNN7EXAMPLE", Credential::AwsAccessKeyId),
            (
                "CREDS",
                "id=ASIAY34FZKBOKMUTVV7A;",
                Credential::AwsAccessKeyId,
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                Credential::AwsSecretAccessKey,
            ),
            (
                "my_aws_secret",
                "secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                Credential::AwsSecretAccessKey,
            ),
            ("TLS_KEY", pem, Credential::PrivateKey),
            (
                "SSH",
                "-----BEGIN OPENSSH PRIVATE KEY-----b3BlbnNzaC1rZXktdjE=",
                Credential::PrivateKey,
            ),
            (
                "K",
                "-----BEGIN ENCRYPTED PRIVATE KEY-----x",
                Credential::PrivateKey,
            ),
            ("SESSION", jwt, Credential::Jwt),
            (
                "AUTH",
                "Bearer 0123456789abcdef0123",
                Credential::BearerToken,
            ),
            (
                "AUTH",
                "bearer abcdefghijklmnopqrst",
                Credential::BearerToken,
            ),
            (
                "GH",
                "ghp_0123456789abcdefghijABCDEFGHIJ012345",
                Credential::PrefixedToken("ghp_"),
            ),
            (
                "GH",
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
                Credential::PrefixedToken("github_pat_"),
            ),
            (
                "SLACK",
                "xoxb-1234567890-0987654321-AbCdEfGh",
                Credential::PrefixedToken("xoxb-"),
            ),
            (
                "SLACK",
                "xoxp-1234567890-abc",
                Credential::PrefixedToken("xoxp-"),
            ),
            (
                "STRIPE",
                "sk_live_51H8abcdefghijklmnop",
                Credential::PrefixedToken("sk_live_"),
            ),
            (
                "GITLAB",
                "glpat-abcdefghij0123456789",
                Credential::PrefixedToken("glpat-"),
            ),
            (
                "DATABASE_URL",
                "postgres://app:s3cr3t@db.internal:5432/app",
                Credential::UrlPassword,
            ),
            ("REDIS", "redis://:pw@cache:6379", Credential::UrlPassword),
        ] {
            assert_eq!(
                looks_like_credential(name, value),
                Some(found),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn ordinary_configuration_is_not_taken_for_a_credential() {
        for (name, value) in [
            ("GREETING", "hello"),
            ("LOG_LEVEL", "info"),
            ("AWS_REGION", "us-east-1"),
            // A 40-character hex digest (a commit id) under an AWS name: no upper case.
            ("AWS_XRAY_BUILD", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            // 40 letters, no digit.
            ("AWS_NOTE", "ThisIsAVeryLongCamelCaseWordOfFortyChars"),
            // The same base64 secret-key shape, under a name that does not say AWS.
            ("SESSION_SALT", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            // Too short or too long to be an access key id, or not all upper case.
            ("ID", "AKIA1234"),
            ("ID", "AKIAIOSFODNN7EXAMPLE0"),
            ("ID", "AKIAiosfodnn7example"),
            (
                "PUBLIC_KEY",
                "-----BEGIN PUBLIC KEY-----MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
            ),
            ("CERT", "-----BEGIN CERTIFICATE-----MIIB"),
            ("DOCS", "tokens look like ghp_… or xoxb-…"),
            ("PREFIX", "sk_live_"),
            ("TEST_KEY", "sk_test_51H8abcdefghijklmnop"),
            ("AUTH_SCHEME", "Bearer"),
            ("HEADER", "Bearer short"),
            ("API", "https://api.example.com/v1?x=1"),
            ("API", "https://user@api.example.com/v1"),
            ("API", "https://api.example.com/a:b@c"),
            ("VERSION", "eyJ.not.a.token"),
            ("ARN", SECRET),
            ("ARN", PARAMETER),
            ("UUID", "123e4567-e89b-12d3-a456-426614174000"),
        ] {
            assert_eq!(looks_like_credential(name, value), None, "{name}={value}");
        }
    }

    #[test]
    fn what_a_credential_looks_like_is_said_without_the_value() {
        let found = looks_like_credential("K", "AKIAIOSFODNN7EXAMPLE").expect("found");
        assert!(!found.to_string().contains("IOSFODNN7"));
        assert!(use_a_reference_instead("DB_PASSWORD").contains("\"secrets\": {\"DB_PASSWORD\""));
    }
}
