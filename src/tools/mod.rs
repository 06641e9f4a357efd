//! Programs that ship inside the `troupe` binary but are not the server: a demo game room
//! (`troupe demo-room`) and a load generator (`troupe load`, the benchmarks).

pub mod demo_room;
pub mod loadgen;
