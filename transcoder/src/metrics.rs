//! Transcoder metrics: per rung fps, queue depth, shed events and the encoder in use; per
//! stream the real-time factor and input dropped when the ladder could not keep up.

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::ladder::PlannedRung;

/// The transcoder's metric families, registered once per process.
#[derive(Clone)]
pub struct TranscodeMetrics {
    fps: GaugeVec,
    realtime: GaugeVec,
    queue: IntGaugeVec,
    shed: IntCounterVec,
    active: IntGaugeVec,
    dropped: IntCounterVec,
    encoder: IntGaugeVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // A second registration of the same family (a second origin in one test process) is
    // harmless: the family is still exported by the first.
    let _ = r.register(Box::new(c.clone()));
    c
}

impl TranscodeMetrics {
    /// Creates and registers the families in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                GaugeVec::new(Opts::new(name, help), labels)
                    .unwrap_or_else(|e| unreachable!("static metric {name}: {e}")),
            )
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntGaugeVec::new(Opts::new(name, help), labels)
                    .unwrap_or_else(|e| unreachable!("static metric {name}: {e}")),
            )
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels)
                    .unwrap_or_else(|e| unreachable!("static metric {name}: {e}")),
            )
        };
        TranscodeMetrics {
            fps: gauge(
                "potok_transcode_fps",
                "Frames per second each rung encodes (over the last 2 s).",
                &["stream", "rung"],
            ),
            realtime: gauge(
                "potok_transcode_realtime_factor",
                "Seconds of media the slowest rung encodes per second (1 = keeping up).",
                &["stream"],
            ),
            queue: int_gauge(
                "potok_transcode_queue_depth",
                "Items waiting in a ladder queue (rung=\"input\": the decoder's).",
                &["stream", "rung"],
            ),
            shed: counter(
                "potok_transcode_shed_total",
                "Rungs dropped because the ladder fell behind real time or the encoder failed.",
                &["stream", "rung"],
            ),
            active: int_gauge(
                "potok_transcode_rung_active",
                "1 while a rung is being produced, by encoder.",
                &["stream", "rung", "encoder"],
            ),
            dropped: counter(
                "potok_transcode_input_dropped_total",
                "Source access units the ladder dropped because its input queue was full.",
                &["stream"],
            ),
            encoder: int_gauge(
                "potok_transcode_encoder_info",
                "The video encoder the ladder uses (chosen at start; `auto` probes hardware).",
                &["encoder", "requested"],
            ),
        }
    }

    /// The lowest real-time factor among the running ladders, if any runs.
    pub fn slowest_realtime_factor(&self) -> Option<f64> {
        use prometheus::core::Collector;
        self.realtime
            .collect()
            .iter()
            .flat_map(|f| f.get_metric().iter().map(|m| m.get_gauge().get_value()))
            .min_by(f64::total_cmp)
    }

    /// What the gauges and counters say of `stream`'s ladder now (read, never creating a
    /// series).
    pub fn stream_stats(&self, stream: &str) -> LadderStats {
        use prometheus::core::Collector;
        // (the rung label, the value) of every series of `c` for this stream.
        let series = |c: &dyn Collector| -> Vec<(Option<String>, f64)> {
            let mut out = Vec::new();
            for family in c.collect() {
                let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
                for m in family.get_metric() {
                    let label = |n: &str| {
                        m.get_label()
                            .iter()
                            .find(|l| l.name() == n)
                            .map(|l| l.value().to_owned())
                    };
                    if label("stream").as_deref() == Some(stream) {
                        let v = if counter {
                            m.get_counter().get_value()
                        } else {
                            m.get_gauge().get_value()
                        };
                        out.push((label("rung"), v));
                    }
                }
            }
            out
        };
        LadderStats {
            fps: series(&self.fps)
                .into_iter()
                .filter_map(|(rung, v)| Some((rung?, v)))
                .collect(),
            realtime: series(&self.realtime).first().map(|(_, v)| *v),
            dropped: series(&self.dropped).first().map_or(0, |(_, v)| *v as u64),
        }
    }

    /// Records the encoder choice.
    pub fn set_encoder(&self, encoder: &str, requested: &str) {
        self.encoder.with_label_values(&[encoder, requested]).set(1);
    }

    pub(crate) fn ladder(
        &self,
        stream: &str,
        encoder: &str,
        rungs: &[PlannedRung],
    ) -> LadderMetrics {
        for r in rungs {
            self.active
                .with_label_values(&[stream, &r.spec.name, encoder])
                .set(1);
        }
        LadderMetrics {
            stream: stream.to_owned(),
            encoder: encoder.to_owned(),
            all: self.clone(),
            realtime: self.realtime.with_label_values(&[stream]),
            dropped: self.dropped.with_label_values(&[stream]),
        }
    }
}

/// A stream's ladder as its metrics tell it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LadderStats {
    /// Encoded frames per second by rung.
    pub fps: Vec<(String, f64)>,
    /// Real-time factor (1 = keeping up), while it runs.
    pub realtime: Option<f64>,
    /// Input frames dropped because the ladder fell behind.
    pub dropped: u64,
}

/// One ladder's handles.
#[derive(Clone)]
pub(crate) struct LadderMetrics {
    stream: String,
    encoder: String,
    all: TranscodeMetrics,
    pub(crate) realtime: Gauge,
    pub(crate) dropped: IntCounter,
}

impl LadderMetrics {
    pub(crate) fn fps(&self, rung: &str, v: f64) {
        self.all.fps.with_label_values(&[&self.stream, rung]).set(v);
    }

    pub(crate) fn queue(&self, rung: &str, depth: usize) {
        self.all
            .queue
            .with_label_values(&[&self.stream, rung])
            .set(depth as i64);
    }

    pub(crate) fn shed(&self, rung: &str) {
        self.all.shed.with_label_values(&[&self.stream, rung]).inc();
        self.all
            .active
            .with_label_values(&[&self.stream, rung, &self.encoder])
            .set(0);
    }

    /// The ladder ended: its gauges go away (counters stay).
    pub(crate) fn close<'a>(&self, rungs: impl Iterator<Item = &'a str>) {
        for r in rungs {
            let _ = self.all.fps.remove_label_values(&[&self.stream, r]);
            let _ = self.all.queue.remove_label_values(&[&self.stream, r]);
            let _ = self
                .all
                .active
                .remove_label_values(&[&self.stream, r, &self.encoder]);
        }
        let _ = self.all.queue.remove_label_values(&[&self.stream, "input"]);
        let _ = self.all.realtime.remove_label_values(&[&self.stream]);
    }
}
