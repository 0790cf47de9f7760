//! The one JSON error body both services answer with, so that a client (the CLI, the console,
//! a script) reads every refusal the same way: a machine-readable code, a sentence for people,
//! and, for bad input, each field at fault with what is allowed.

use serde::{Deserialize, Serialize};

use crate::config::FieldError;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `invalid`, `not_found`, `conflict`, `too_large` (413), `unsupported_media_type` (415),
    /// `unavailable`, …
    pub error: String,
    pub message: String,
    /// For `invalid`: every field at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<FieldError>,
}

/// Documents bearer authentication in an OpenAPI document: the `bearer` security scheme on
/// every operation but those under `open`, each of which may then also answer 401 (no valid
/// credentials) and 403 (the role or service scope is missing) with [`ErrorBody`]. Both
/// services' documents say it the same way.
#[cfg(feature = "openapi")]
pub fn document_bearer_auth(doc: &mut utoipa::openapi::OpenApi, open: &[&str]) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    let error = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    let response = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", error.clone())
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        if open.contains(&path.as_str()) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            operation.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
            let responses = &mut operation.responses.responses;
            responses
                .entry("401".into())
                .or_insert_with(|| response("no valid credentials").into());
            responses.entry("403".into()).or_insert_with(|| {
                response("the caller's role or service scope does not allow this").into()
            });
        }
    }
}
