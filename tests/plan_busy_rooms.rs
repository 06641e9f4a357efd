//! Promise 1 at the planner: over many generated fleets and changes, no plan counts a busy room
//! as removed now, and what a change leaves behind is never below its target.
//!
//! Deterministic: a fixed-seed generator, so a failure names a case that reproduces.

use std::collections::BTreeMap;

use troupe::domain::plan::{Action, LiveRoom, LiveScheduler, LiveState, PlanOptions, plan};
use troupe::domain::room::RoomStatus;
use troupe::domain::spec::Scheduler;

const CASES: u64 = 2_000;

const BASE: &str = r#"
name: arena
game: arena
roomsReplicas: 4
portRange: {start: 40000, end: 41000}
spec:
  containers:
    - name: server
      image: registry.example/arena:1
"#;

/// xorshift64*: enough randomness for case generation, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn busy_rooms_are_never_removed_and_targets_are_met() {
    let base: Scheduler = serde_saphyr::from_str(BASE).unwrap();
    let mut rng = Rng(0x5EED_CAFE);
    for case in 0..CASES {
        let mut applied = base.clone();
        applied.rooms_replicas = Some(rng.below(8) as u32);
        let target_live = applied.rooms_replicas.unwrap();
        let mut desired = applied.clone();
        match rng.below(4) {
            0 => desired.spec.containers[0].image = "registry.example/arena:2".into(),
            1 => desired.rooms_replicas = Some(rng.below(8) as u32),
            2 => {
                desired.spec.containers[0].image = "registry.example/arena:2".into();
                desired.rooms_replicas = Some(rng.below(8) as u32);
            }
            _ => {}
        }
        let versions = [applied.version(), desired.version(), "0ld".to_string()];
        let rooms: Vec<LiveRoom> = (0..rng.below(12))
            .map(|i| LiveRoom {
                id: format!("r{i}"),
                version: versions[rng.below(3) as usize].clone(),
                status: RoomStatus::ALL[rng.below(RoomStatus::ALL.len() as u64) as usize],
            })
            .collect();
        let fleet: Vec<_> = rooms.iter().filter(|r| !r.status.is_leaving()).collect();
        let busy = fleet.iter().filter(|r| r.status.is_busy()).count() as u32;
        let free = fleet.len() as u32 - busy;
        let live = LiveState {
            schedulers: BTreeMap::from([(
                "arena".to_string(),
                LiveScheduler {
                    applied,
                    target_rooms: target_live,
                    rooms: rooms.clone(),
                },
            )]),
        };
        let prune = rng.below(2) == 0;
        let desired = if rng.below(10) == 0 {
            vec![]
        } else {
            vec![desired]
        };
        let p = plan(
            &desired,
            &live,
            &PlanOptions {
                prune,
                revision: None,
            },
        );
        let ctx = || format!("case {case}: rooms {rooms:?}\nplan {:#?}", p.changes);

        for c in &p.changes {
            let i = c.impact;
            assert!(
                i.remove <= free,
                "removes more than the free rooms: {}",
                ctx()
            );
            assert!(
                i.kept_busy <= busy,
                "keeps more busy rooms than exist: {}",
                ctx()
            );
            assert!(
                i.replace + i.remove <= fleet.len() as u32,
                "retires more rooms than run: {}",
                ctx()
            );
            if c.action == Action::Orphan {
                assert_eq!(i, Default::default(), "an orphan is left alone: {}", ctx());
                continue;
            }
            let after = fleet.len() as u32 + i.create - i.remove;
            assert!(after >= c.target_rooms, "ends below target: {}", ctx());
            if busy == 0 {
                assert_eq!(
                    after,
                    c.target_rooms,
                    "without busy rooms the target is met exactly: {}",
                    ctx()
                );
                assert_eq!(i.kept_busy, 0, "{}", ctx());
            }
        }
    }
}
