//! The OpenAPI 3.1 description served at `/v1/openapi.json`.

use serde_json::{json, Value};

fn op(summary: &str, responses: &[(&str, &str)]) -> Value {
    let mut r = serde_json::Map::new();
    for (code, what) in responses {
        r.insert(code.to_string(), json!({ "description": what }));
    }
    json!({ "summary": summary, "responses": r })
}

fn with_body(mut operation: Value, schema: Value) -> Value {
    operation["requestBody"] =
        json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    operation
}

pub fn document() -> Value {
    let service = json!([{ "name": "service", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[a-z][a-z0-9-]{1,22}$" } }]);
    let errors = [
        ("400", "invalid input: the error names the field"),
        ("404", "unknown service"),
        ("409", "conflicting state or concurrent command"),
    ];
    let command = |summary: &str| {
        let mut o = op(summary, &[("202", "accepted")]);
        for (c, d) in errors {
            o["responses"][c] = json!({ "description": d });
        }
        o["parameters"] = service.clone();
        o
    };
    let reason = json!({ "type": "object", "properties": { "reason": { "type": "string" } }, "additionalProperties": false });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ionroller roller API", "version": "1" },
        "paths": {
            "/healthz": { "get": op("liveness", &[("200", "ok")]) },
            "/metrics": { "get": op("Prometheus metrics", &[("200", "text exposition format")]) },
            "/v1/services": { "get": op("services with a saved config", &[("200", "{services: [name]}")]) },
            "/v1/services/{service}": { "get": { "summary": "desired and live state: environments, traffic per version, current step and what it waits for", "parameters": service, "responses": { "200": { "description": "status" }, "404": { "description": "unknown service" } } } },
            "/v1/services/{service}/config": {
                "get": { "summary": "latest config", "parameters": service, "responses": { "200": { "description": "config with its version" }, "404": { "description": "unknown service" } } },
                "put": with_body(json!({ "summary": "save a new config version", "parameters": service, "responses": { "200": { "description": "saved" }, "400": { "description": "every problem, each naming its field" } } }), json!({ "$ref": "#/components/schemas/ServiceConfig" }))
            },
            "/v1/services/{service}/configs": { "get": { "summary": "config history, newest first", "parameters": service, "responses": { "200": { "description": "configs" } } } },
            "/v1/services/{service}/releases": { "post": with_body(command("release a version (202 with a rollout id)"), json!({ "type": "object", "required": ["version"], "properties": { "version": { "type": "string" }, "reason": { "type": "string" }, "override_alarms": { "type": "boolean" } }, "additionalProperties": false })) },
            "/v1/services/{service}/rollback": { "post": with_body(command("release the previous version (or abort the rollout in progress)"), json!({ "type": "object", "properties": { "to_version": { "type": "string" }, "reason": { "type": "string" } }, "additionalProperties": false })) },
            "/v1/services/{service}/pause": { "post": with_body(command("pause the rollout in progress"), reason.clone()) },
            "/v1/services/{service}/resume": { "post": command("resume a paused rollout") },
            "/v1/services/{service}/promote": { "post": command("end the current wait (canary, test endpoint, pause)") },
            "/v1/services/{service}/abort": { "post": with_body(command("move traffic back to the previous version"), reason) },
            "/v1/services/{service}/plan": { "get": { "summary": "steps, pauses and worst-case duration a release would take", "parameters": [service[0].clone(), { "name": "version", "in": "query", "required": true, "schema": { "type": "string" } }], "responses": { "200": { "description": "plan" }, "400": { "description": "bad version" } } } },
            "/v1/services/{service}/events": { "get": { "summary": "server-sent events of the service's stream; resumable with Last-Event-ID", "parameters": service, "responses": { "200": { "description": "text/event-stream" } } } },
            "/v1/sim/alarms/{name}": { "post": op("simulated cloud: set an alarm's state (ALARM, OK, INSUFFICIENT_DATA)", &[("200", "set"), ("400", "bad state")]) },
            "/v1/sim/fail-env": { "post": op("simulated cloud: environments of a version turn Red", &[("200", "set")]) },
            "/v1/sim/terminate-env": { "post": op("simulated cloud: terminate an environment behind the roller's back", &[("200", "done")]) },
            "/v1/sim/deregister": { "post": op("simulated cloud: deregister an instance behind the roller's back", &[("200", "done")]) }
        },
        "components": { "schemas": { "ServiceConfig": { "type": "object", "description": "see examples/hello.json and `ionroller config init`", "required": ["endpoint", "image", "instances", "rollout"] } } }
    })
}
