//! Builders for recorded events in tests.

use chrono::{DateTime, Duration, Utc};
use ionroller_shared::events::ServiceEvent;
use ionroller_shared::store::{
    EventId, EventMetadata, Position, RecordedEvent, Revision, StreamId,
};
use uuid::Uuid;

pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid") + Duration::seconds(secs)
}

pub fn recorded(n: u64, event_type: &str, data: serde_json::Value) -> RecordedEvent {
    RecordedEvent {
        stream: StreamId::new("service:hello").expect("valid"),
        revision: Revision(n),
        position: Position::new(n + 1, 0),
        recorded_at: t(n as i64),
        id: EventId(Uuid::from_u128(n as u128 + 1)),
        event_type: event_type.into(),
        schema_version: 1,
        data,
        metadata: EventMetadata {
            actor: "roller".into(),
            correlation_id: Uuid::nil(),
            causation_id: None,
            occurred_at: t(n as i64),
        },
    }
}

/// A service history being scripted: each event at a given second, by a given actor.
#[derive(Default)]
pub struct Script {
    pub events: Vec<RecordedEvent>,
}

impl Script {
    pub fn at(&mut self, secs: i64, actor: &str, event: ServiceEvent) -> &mut Self {
        let (event_type, data) = event.encode();
        let mut e = recorded(self.events.len() as u64, &event_type, data);
        e.metadata.occurred_at = t(secs);
        e.recorded_at = t(secs);
        e.metadata.actor = actor.into();
        self.events.push(e);
        self
    }
}
