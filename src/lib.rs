//! Troupe: a declarative GitOps reconciler for fleets of dedicated game servers.
//!
//! The tree shows the layers, and arrows point one way: [`cli`] and [`http`] → [`controller`] →
//! [`state`], [`runtime`], [`source`] → [`domain`].
//!
//! - [`domain`]: the scheduler YAML and its validation, the planner, the room status machine,
//!   convergence, autoscaling, timeouts and the reconcile's decisions. Pure: no I/O crate.
//! - [`state`]: what survives a `kill -9`: journals, the room registry, the operation queue and
//!   history, revisions seen.
//! - Adapters: [`source`] (git or a directory), [`runtime`] (local processes or Kubernetes),
//!   [`http`] (rooms and management APIs, dashboard, event forwarders).
//! - [`controller`]: observe → decide (domain functions) → the one executor that acts.
//! - [`app`]: the composition root; [`supervise`]: who owns each long-running task.
//! - [`cli`]: the `troupe` binary; [`tools`]: the demo room and the load generator.

pub mod app;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod source;
pub mod state;
pub mod supervise;
pub mod tools;
