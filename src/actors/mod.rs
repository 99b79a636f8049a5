//! The actor side: the long-lived actors, and the spawn hook through which the engine's
//! dispatcher runs each instance in a supervised actor. The engine and the intake know no
//! actor system; this module gives them their lifecycle.
//!
//! | actor | on failure | on shutdown |
//! |---|---|---|
//! | [`intake::IntakeActor`] (one per queue) | a panic in its loop is caught; the actor stops and its supervisor restarts it; in-flight messages become visible again when their visibility lapses | stops polling, waits for running workflows up to the deadline, releases what is left (visibility 0), then stops |
//! | [`workflow::WorkflowActor`] (one per running instance) | a panic is caught and counted in the journal; the supervisor restarts the actor, which resumes from the journal; after `max_panics` the instance compensates and is dead-lettered | stops at the next journaled point and reports `Released` |

pub mod intake;
pub mod workflow;

pub use workflow::ActorSpawn;
