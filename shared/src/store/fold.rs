//! Reading one stream after the revision a fold has reached: the one loop every fold (a
//! service's state, the load-balancer claims, the tokens) catches up with.

use super::{EventStore, RecordedEvent, Revision, StoreError, StreamId, StreamRead};

const PAGE: usize = 500;

/// Reads `stream` after `folded`, page by page, handing each event to `apply`. A stream that
/// does not exist yet has nothing to fold.
pub async fn fold_stream<E: From<StoreError>>(
    store: &dyn EventStore,
    stream: &StreamId,
    folded: Option<Revision>,
    mut apply: impl FnMut(&RecordedEvent) -> Result<(), E>,
) -> Result<(), E> {
    let mut from = folded.map_or(0, |r| r.0 + 1);
    loop {
        let page = match store
            .read_stream(stream, StreamRead::forward(PAGE).from(Revision(from)))
            .await
        {
            Ok(page) => page,
            Err(StoreError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for event in &page {
            apply(event)?;
            from = event.revision.0 + 1;
        }
        if page.len() < PAGE {
            return Ok(());
        }
    }
}
