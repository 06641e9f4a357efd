//! TEMP stub
pub mod live;
pub mod render {
    pub fn text(_: &super::Plan, _: bool) -> String { todo!() }
    pub fn markdown(_: &super::Plan, _: usize) -> String { todo!() }
    pub fn json(_: &super::Plan) -> String { todo!() }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Action { Create, UpdateInPlace, Rollout, Scale, Delete, Orphan, Converge }
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change { pub scheduler: String, pub action: Action, pub desired: Option<crate::spec::Scheduler>, pub reasons: Vec<String> }
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan { pub id: String, pub changes: Vec<Change> }
impl Plan { pub fn has_changes(&self) -> bool { todo!() } }
pub struct PlanOptions { pub prune: bool, pub revision: Option<String> }
pub fn plan(_: &[crate::spec::Scheduler], _: &live::LiveState, _: &PlanOptions) -> Plan { todo!() }
