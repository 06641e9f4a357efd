//! The rooms side of the controller, as the rooms API and allocation see it: check a room's
//! token, take its ping and its player events, hand ready rooms to matchmakers. The HTTP layer
//! calls this and nothing deeper, so that where rooms are recorded (the state directory today,
//! the cluster with several replicas later) changes here, not in every handler.
//!
//! Must always hold: nothing here blocks on I/O beyond the registry's one journal write and, for
//! an allocation, the runtime's record of it ([`Runtime::confirm_allocation`]: on Kubernetes a
//! write of the pod, so that no other replica can hand the room out). An allocation is atomic:
//! the registry chooses and records under one lock, and a room whose record the runtime refuses
//! is never answered.
//!
//! [`Runtime::confirm_allocation`]: crate::runtime::Runtime::confirm_allocation

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Fleet;
use crate::domain::room::token::verify_room_token;
use crate::domain::room::{PingStatus, Room, RoomCounts, RoomEvent};
use crate::runtime::AllocationRefused;
use crate::state::registry::{PingOutcome, RegistryError};

/// What allocation refused, besides "no room free".
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    /// The scheduler, or every scheduler of the game matching the labels, is unknown.
    #[error("{0}")]
    NotFound(String),
    /// The allocation could not be recorded; no room was handed out.
    #[error(transparent)]
    Store(#[from] crate::state::journal::StoreError),
    /// The allocation could not be recorded where the rooms run (the cluster is unreachable, this
    /// replica no longer leads); no room was handed out: retry.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a room or scheduler is not known yet.
pub const STARTING: &str = "starting: the rooms recorded before are being taken back";

/// Rooms tried for one allocation when the runtime finds them taken (another replica handed them
/// out) before it answers "no room".
const TAKEN_ATTEMPTS: usize = 8;

/// The rooms API's view of the controller. Cheap to clone.
#[derive(Clone)]
pub struct Rooms {
    fleet: Arc<Fleet>,
}

impl Rooms {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self { fleet }
    }

    /// Rooms of one scheduler (or all), oldest first.
    pub fn list(&self, scheduler: Option<&str>) -> Vec<Room> {
        self.fleet.registry.list(scheduler)
    }

    /// Room counts per scheduler.
    pub fn counts(&self) -> BTreeMap<String, RoomCounts> {
        self.fleet.registry.counts()
    }

    /// Marked changed whenever a room is added, removed or changes status.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.fleet.registry.subscribe()
    }

    /// Journal writes of room changes that failed since start.
    pub fn store_failures(&self) -> u64 {
        self.fleet.registry.store_failures()
    }

    /// Whether `token` is room `room`'s of scheduler `scheduler`.
    pub fn token_is_valid(&self, scheduler: &str, room: &str, token: &str) -> bool {
        verify_room_token(&self.fleet.config().secret, scheduler, room, token)
    }

    /// Still taking back the rooms recorded before this start: an unknown room or scheduler may
    /// be known in a moment (answer 503, not 404).
    pub fn starting(&self) -> bool {
        !self.fleet.adopted()
    }

    /// Whether scheduler `scheduler` has a room `room`.
    pub fn exists(&self, scheduler: &str, room: &str) -> bool {
        self.fleet
            .registry
            .get(room)
            .is_some_and(|r| r.scheduler == scheduler)
    }

    /// A room reported its status (and match count, metadata).
    pub fn ping(
        &self,
        scheduler: &str,
        room: &str,
        status: PingStatus,
        running_matches: Option<u32>,
        metadata: Option<serde_json::Value>,
    ) -> Result<PingOutcome, RegistryError> {
        let max_matches = self.fleet.max_matches(scheduler).unwrap_or(1);
        self.fleet.registry.ping(
            scheduler,
            room,
            status,
            running_matches,
            max_matches,
            metadata,
        )
    }

    /// A player joined (`join`) or left; the number of players now in the room.
    pub fn player(
        &self,
        scheduler: &str,
        room: &str,
        join: bool,
        player: &str,
    ) -> Result<usize, RegistryError> {
        self.fleet.registry.player(scheduler, room, join, player)
    }

    /// Hand a free room of `scheduler` to the caller (`None`: none is free).
    pub async fn allocate_in_scheduler(
        &self,
        scheduler: &str,
    ) -> Result<Option<Room>, AllocateError> {
        if self.fleet.max_matches(scheduler).is_none() {
            return Err(self.not_known(format!("scheduler {scheduler} not found")));
        }
        self.allocate(&[scheduler]).await
    }

    /// Hand a free room of any scheduler of `game` whose labels include `labels`.
    pub async fn allocate_in_game(
        &self,
        game: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<Room>, AllocateError> {
        let applied = self.fleet.applied_all();
        let names: Vec<&str> = applied
            .iter()
            .filter(|(_, a)| a.spec.game == game)
            .filter(|(_, a)| labels.iter().all(|(k, v)| a.spec.labels.get(k) == Some(v)))
            .map(|(n, _)| n.as_str())
            .collect();
        if names.is_empty() {
            return Err(self.not_known(format!("no scheduler of game {game} matches the labels")));
        }
        self.allocate(&names).await
    }

    /// Nothing matched: not found, or not known yet while starting.
    fn not_known(&self, message: String) -> AllocateError {
        if self.starting() {
            AllocateError::Unavailable(STARTING.into())
        } else {
            AllocateError::NotFound(message)
        }
    }

    /// Allocate in the registry, then have the runtime record it; a room the runtime finds taken
    /// stays allocated here (it is) and the next free one is tried; one it cannot record is given
    /// back.
    async fn allocate(&self, schedulers: &[&str]) -> Result<Option<Room>, AllocateError> {
        for _ in 0..TAKEN_ATTEMPTS {
            let Some(room) = self.fleet.registry.allocate(schedulers)? else {
                return Ok(None);
            };
            match self.fleet.runtime.confirm_allocation(&room).await {
                Ok(()) => return Ok(Some(room)),
                Err(AllocationRefused::Taken) => {
                    tracing::warn!(room = %room.id, scheduler = %room.scheduler,
                        "the cluster records this room as taken: trying another");
                }
                Err(AllocationRefused::Unavailable(why)) => {
                    let _ = self.fleet.registry.apply(
                        &room.scheduler,
                        &room.id,
                        &RoomEvent::AllocationExpired,
                        None,
                    );
                    return Err(AllocateError::Unavailable(why));
                }
            }
        }
        Ok(None)
    }
}
