//! Prometheus metrics, prefixed `troupe_`, with units in their names.
//!
//! Counters are bumped where things happen; room gauges (by status, busy, matches) and the
//! revision's age are filled from the registry and the controller at scrape time, so they can
//! never drift from them.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts,
    Registry, TextEncoder,
};

/// Ping latency buckets: a ping is answered from memory in well under a millisecond, unless
/// its status change is journaled (one `write(2)` of one line).
const PING_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

pub struct Metrics {
    registry: Registry,
    /// Rooms per scheduler and status (filled at scrape time).
    pub rooms: GaugeVec,
    /// Rooms each scheduler should have.
    pub rooms_desired: GaugeVec,
    /// Busy rooms (active, occupied, allocated) per scheduler (filled at scrape time).
    pub rooms_busy: GaugeVec,
    /// Matches running per scheduler (filled at scrape time).
    pub room_matches: GaugeVec,
    /// Seconds since the running revision was first seen (filled at scrape time).
    pub revision_age_seconds: Gauge,
    /// Time to answer a room's ping, whatever the answer.
    pub ping_seconds: Histogram,
    /// Finished operations by kind and outcome.
    pub operations: IntCounterVec,
    /// Operation durations by kind.
    pub operation_seconds: HistogramVec,
    /// Pings by outcome (`ok`, `refused`, `unauthorized`, `unknown`, `invalid`).
    pub pings: IntCounterVec,
    /// Revisions loaded by outcome (`ok`, `invalid`, `error`).
    pub revisions: IntCounterVec,
    /// 1 while the newest revision has errors and an older one keeps running.
    pub revision_invalid: Gauge,
    /// Runtime events dropped or failed, by kind.
    pub runtime_events: IntCounterVec,
    /// Allocation requests by outcome (`allocated`, `no_room`, `error`).
    pub allocations: IntCounterVec,
    /// Time to choose and record an allocation.
    pub allocation_seconds: prometheus::Histogram,
    /// Allocations returned to ready because the room did not confirm them in time.
    pub allocations_expired: prometheus::IntCounter,
    /// Forwarder events by outcome (`delivered`, `retried`, `failed`, `dropped`).
    pub forwarded: IntCounterVec,
    /// Events waiting in the forwarder queue.
    pub forward_queue: prometheus::IntGauge,
    /// Webhook deliveries by provider (`github`, `gitlab`, `unknown`) and outcome (`triggered`,
    /// `ignored`, `ping`, `unauthorized`, `malformed`, `disabled`).
    pub webhooks: IntCounterVec,
    /// Failed source checks since the last success (filled at scrape time).
    pub source_failures: Gauge,
    /// Unix time of the last successful source check (filled at scrape time; 0 before it).
    pub source_last_success: Gauge,
    /// Requests sent to the Kubernetes API server, by HTTP method.
    pub kube_requests: IntCounterVec,
    /// Runtime events waiting for the controller (the queue holds [`crate::runtime::EVENT_QUEUE`]).
    pub runtime_event_queue: prometheus::IntGauge,
    /// Room and scheduler records not yet written where the rooms run (filled at scrape
    /// time).
    pub runtime_records_pending: prometheus::IntGauge,
    /// Restarts of supervised tasks, by task.
    pub task_restarts: IntCounterVec,
    /// Finished operations the metrics feed skipped because it fell behind.
    pub operation_events_missed: prometheus::IntCounter,
    /// Journal writes that failed, by journal (`rooms`, `schedulers`, `operations`): the change
    /// each carried was refused or left unrecorded (filled at scrape time).
    pub store_failures: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("troupe".into()), None).expect("valid prefix");
        let rooms = GaugeVec::new(
            Opts::new("rooms", "Rooms by scheduler and status"),
            &["scheduler", "status"],
        )
        .expect("valid metric");
        let rooms_desired = GaugeVec::new(
            Opts::new("rooms_desired", "Rooms each scheduler should have"),
            &["scheduler"],
        )
        .expect("valid metric");
        let rooms_busy = GaugeVec::new(
            Opts::new(
                "rooms_busy",
                "Rooms where a match is played or about to be (active, occupied, allocated)",
            ),
            &["scheduler"],
        )
        .expect("valid metric");
        let room_matches = GaugeVec::new(
            Opts::new("room_matches", "Matches running in a scheduler's rooms"),
            &["scheduler"],
        )
        .expect("valid metric");
        let revision_age_seconds = Gauge::new(
            "revision_age_seconds",
            "Seconds since the running revision was first seen (0 before the first)",
        )
        .expect("valid metric");
        let ping_seconds = Histogram::with_opts(
            HistogramOpts::new("ping_duration_seconds", "Time to answer a room's ping")
                .buckets(PING_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let operations = IntCounterVec::new(
            Opts::new(
                "operations_total",
                "Finished operations by kind and outcome",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        let operation_seconds = HistogramVec::new(
            HistogramOpts::new("operation_duration_seconds", "Operation durations").buckets(vec![
                0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        let pings = IntCounterVec::new(
            Opts::new("pings_total", "Room pings by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let revisions = IntCounterVec::new(
            Opts::new("revisions_total", "Revisions loaded by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let revision_invalid = Gauge::new(
            "revision_invalid",
            "1 while the newest revision has errors and the last good one keeps running",
        )
        .expect("valid metric");
        let runtime_events = IntCounterVec::new(
            Opts::new(
                "runtime_events_total",
                "Room events reported by the runtime, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let allocations = IntCounterVec::new(
            Opts::new("allocations_total", "Allocation requests by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let allocation_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "allocation_duration_seconds",
                "Time to choose and record an allocation",
            )
            .buckets(vec![
                0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05,
            ]),
        )
        .expect("valid metric");
        let allocations_expired = prometheus::IntCounter::new(
            "allocations_expired_total",
            "Allocations returned to ready because the room did not confirm them in time",
        )
        .expect("valid metric");
        let forwarded = IntCounterVec::new(
            Opts::new("forwarded_events_total", "Forwarder events by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let forward_queue = prometheus::IntGauge::new(
            "forward_queue_events",
            "Events waiting in the forwarder queue",
        )
        .expect("valid metric");
        let webhooks = IntCounterVec::new(
            Opts::new(
                "webhooks_total",
                "Webhook deliveries by provider and outcome",
            ),
            &["provider", "outcome"],
        )
        .expect("valid metric");
        let source_failures = Gauge::new(
            "source_consecutive_failures",
            "Failed checks of the source since the last success",
        )
        .expect("valid metric");
        let source_last_success = Gauge::new(
            "source_last_success_timestamp_seconds",
            "Unix time of the last successful check of the source",
        )
        .expect("valid metric");
        let kube_requests = IntCounterVec::new(
            Opts::new(
                "kube_requests_total",
                "Requests sent to the Kubernetes API server, by HTTP method",
            ),
            &["method"],
        )
        .expect("valid metric");
        let runtime_event_queue = prometheus::IntGauge::new(
            "runtime_event_queue",
            "Runtime events (room running, placed, exited, failed) waiting for the controller",
        )
        .expect("valid metric");
        let runtime_records_pending = prometheus::IntGauge::new(
            "runtime_records_pending",
            "Room status and applied spec records not yet written where the rooms run (queued or being sent)",
        )
        .expect("valid metric");
        let task_restarts = IntCounterVec::new(
            Opts::new(
                "task_restarts_total",
                "Restarts of supervised background tasks, by task",
            ),
            &["task"],
        )
        .expect("valid metric");
        let operation_events_missed = prometheus::IntCounter::new(
            "operation_events_missed_total",
            "Finished operations the operation metrics skipped because they fell behind",
        )
        .expect("valid metric");
        let store_failures = IntCounterVec::new(
            Opts::new(
                "store_write_failures_total",
                "Journal writes in the state directory that failed, by journal",
            ),
            &["journal"],
        )
        .expect("valid metric");
        for c in [
            Box::new(rooms.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rooms_desired.clone()),
            Box::new(rooms_busy.clone()),
            Box::new(room_matches.clone()),
            Box::new(revision_age_seconds.clone()),
            Box::new(ping_seconds.clone()),
            Box::new(operations.clone()),
            Box::new(operation_seconds.clone()),
            Box::new(pings.clone()),
            Box::new(revisions.clone()),
            Box::new(revision_invalid.clone()),
            Box::new(runtime_events.clone()),
            Box::new(allocations.clone()),
            Box::new(allocation_seconds.clone()),
            Box::new(allocations_expired.clone()),
            Box::new(forwarded.clone()),
            Box::new(forward_queue.clone()),
            Box::new(webhooks.clone()),
            Box::new(source_failures.clone()),
            Box::new(source_last_success.clone()),
            Box::new(kube_requests.clone()),
            Box::new(runtime_event_queue.clone()),
            Box::new(runtime_records_pending.clone()),
            Box::new(task_restarts.clone()),
            Box::new(operation_events_missed.clone()),
            Box::new(store_failures.clone()),
        ] {
            registry.register(c).expect("metrics are registered once");
        }
        Self {
            registry,
            rooms,
            rooms_desired,
            rooms_busy,
            room_matches,
            revision_age_seconds,
            ping_seconds,
            operations,
            operation_seconds,
            pings,
            revisions,
            revision_invalid,
            runtime_events,
            allocations,
            allocation_seconds,
            allocations_expired,
            forwarded,
            forward_queue,
            webhooks,
            source_failures,
            source_last_success,
            kube_requests,
            runtime_event_queue,
            runtime_records_pending,
            task_restarts,
            operation_events_missed,
            store_failures,
        }
    }

    /// Raise the store failure counter of `journal` to `total` (counted by its owner).
    pub fn set_store_failures(&self, journal: &str, total: u64) {
        let c = self.store_failures.with_label_values(&[journal]);
        c.inc_by(total.saturating_sub(c.get()));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
