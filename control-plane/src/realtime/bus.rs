//! The bus: publish/subscribe between control-plane replicas. One interface, two backends:
//! in-process ([`MemoryBus`], `potok all`) and NATS JetStream ([`NatsBus`], a cluster) —
//! never a broker of our own. Subjects are `potok.rt.<channel>`; JetStream keeps them in one
//! stream limited by messages and age per subject, so a replica that restarts briefly finds
//! recent traffic there. Order across replicas comes from the payloads: every chat event
//! carries its room's sequence number, assigned in the database, and the gateway's hub
//! delivers by it (filling any gap from the database).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;

/// Messages a subscriber receives.
pub(crate) type Messages = Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>;

/// A boxed future of the bus.
pub(crate) type BusFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BusError>> + Send + 'a>>;

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BusError {
    /// NATS or JetStream refused or is unreachable.
    #[error("bus: {0}")]
    Nats(String),
}

/// Publish/subscribe.
pub(crate) trait Bus: Send + Sync + 'static {
    /// Publishes `payload` on `subject` (returns once the bus holds it).
    fn publish<'a>(&'a self, subject: &'a str, payload: Vec<u8>) -> BusFuture<'a, ()>;
    /// Everything published on `subject` from now on, in the order the bus received it.
    fn subscribe<'a>(&'a self, subject: &'a str) -> BusFuture<'a, Messages>;
}

/// The subject of a gateway channel.
pub(crate) fn subject(channel: &str) -> String {
    // Channel names are checked by the gateway (letters, digits, '_', '-', ':').
    format!("potok.rt.{}", channel.replace(':', "."))
}

/// In-process bus: one broadcast channel per subject. A subscriber that falls more than
/// the capacity behind skips ahead (the hub notices the sequence gap and reads the rest
/// from the database).
#[derive(Default)]
pub(crate) struct MemoryBus {
    subjects: Mutex<HashMap<String, broadcast::Sender<Arc<Vec<u8>>>>>,
}

const MEMORY_CAPACITY: usize = 4096;

impl MemoryBus {
    fn sender(&self, subject: &str) -> broadcast::Sender<Arc<Vec<u8>>> {
        let mut map = self
            .subjects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget subjects nobody listens to any more (bounded map).
        if map.len() > 10_000 {
            map.retain(|_, s| s.receiver_count() > 0);
        }
        map.entry(subject.to_owned())
            .or_insert_with(|| broadcast::channel(MEMORY_CAPACITY).0)
            .clone()
    }
}

impl Bus for MemoryBus {
    fn publish<'a>(&'a self, subject: &'a str, payload: Vec<u8>) -> BusFuture<'a, ()> {
        let tx = self.sender(subject);
        Box::pin(async move {
            // No receiver is not an error: nobody is connected to that channel.
            let _ = tx.send(Arc::new(payload));
            Ok(())
        })
    }

    fn subscribe<'a>(&'a self, subject: &'a str) -> BusFuture<'a, Messages> {
        let rx = self.sender(subject).subscribe();
        Box::pin(async move {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(m) => return Some((m.as_ref().clone(), rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            Ok(Box::pin(stream) as Messages)
        })
    }
}

/// NATS JetStream: one stream (`POTOK_RT`, subjects `potok.rt.>`) holding at most
/// `per_subject` messages per subject for at most `max_age`; publishes wait for the
/// server's acknowledgement; subscribers are ordered consumers that start at new messages.
pub(crate) struct NatsBus {
    js: async_nats::jetstream::Context,
    stream: async_nats::jetstream::stream::Stream,
}

impl NatsBus {
    /// Connects to `url` and creates (or reuses) the stream.
    pub(crate) async fn connect(
        url: &str,
        per_subject: i64,
        max_age: Duration,
    ) -> Result<NatsBus, BusError> {
        let err = |e: &dyn std::fmt::Display| BusError::Nats(e.to_string());
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| err(&e))?;
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "POTOK_RT".into(),
                subjects: vec!["potok.rt.>".into()],
                max_messages_per_subject: per_subject,
                max_age,
                ..Default::default()
            })
            .await
            .map_err(|e| err(&e))?;
        Ok(NatsBus { js, stream })
    }
}

impl Bus for NatsBus {
    fn publish<'a>(&'a self, subject: &'a str, payload: Vec<u8>) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let ack = self
                .js
                .publish(subject.to_owned(), payload.into())
                .await
                .map_err(|e| BusError::Nats(e.to_string()))?;
            ack.await.map_err(|e| BusError::Nats(e.to_string()))?;
            Ok(())
        })
    }

    fn subscribe<'a>(&'a self, subject: &'a str) -> BusFuture<'a, Messages> {
        Box::pin(async move {
            use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
            let consumer = self
                .stream
                .create_consumer(OrderedConfig {
                    filter_subject: subject.to_owned(),
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| BusError::Nats(e.to_string()))?;
            let messages = consumer
                .messages()
                .await
                .map_err(|e| BusError::Nats(e.to_string()))?;
            let stream = messages.filter_map(|m| async move {
                match m {
                    Ok(m) => Some(m.payload.to_vec()),
                    Err(e) => {
                        tracing::debug!(error = %e, "bus consumer error");
                        None
                    }
                }
            });
            Ok(Box::pin(stream) as Messages)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_bus_delivers_in_order_to_every_subscriber() {
        let bus = MemoryBus::default();
        let mut a = bus.subscribe("potok.rt.chat.x").await.unwrap();
        let mut b = bus.subscribe("potok.rt.chat.x").await.unwrap();
        let mut other = bus.subscribe("potok.rt.chat.y").await.unwrap();
        for i in 0..100u8 {
            bus.publish("potok.rt.chat.x", vec![i]).await.unwrap();
        }
        bus.publish("potok.rt.chat.y", vec![200]).await.unwrap();
        for i in 0..100u8 {
            assert_eq!(a.next().await, Some(vec![i]));
            assert_eq!(b.next().await, Some(vec![i]));
        }
        assert_eq!(other.next().await, Some(vec![200]));
    }
}
