//! Troupe: a declarative GitOps reconciler for fleets of dedicated game servers.
//!
//! The tree shows the layers. Domain, free of I/O: [`spec`] (the scheduler YAML and its
//! validation), [`plan`] (desired vs live, as data), [`rooms`] (room records and the status
//! machine). Around them, adapters: [`source`] (git or a directory), [`runtime`] (local processes
//! or Kubernetes), [`http`] (rooms and management APIs). [`ops`] runs operations one at a time per
//! scheduler; [`controller`] ties a source, the planner and the operations together; [`cli`] is
//! the `troupe` binary.

pub mod app;
pub mod autoscale;
pub mod cli;
pub mod controller;
pub mod demo_room;
pub mod forward;
pub mod http;
pub mod loadgen;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod rooms;
pub mod runtime;
pub mod source;
pub mod spec;
pub mod store;
pub mod supervise;
