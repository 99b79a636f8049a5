//! The actor that runs one workflow instance, under an actix `Supervisor`, and the
//! [`ActorSpawn`] hook through which the engine's dispatcher starts it.
//!
//! actix restarts a supervised actor when it *stops* (not when it panics: an uncaught panic
//! would kill it silently), and only while someone holds its address. So the run is wrapped
//! in `catch_unwind` by the dispatcher, a panic stops the actor, and the dispatcher holds the
//! address (the spawn hook's handle) until the instance is finished: a stopped actor with a
//! live address is restarted, and `started` resumes the instance from the journal.

use std::any::Any;
use std::sync::Arc;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Supervised, Supervisor, WrapFuture,
};

use crate::engine::Spawn;
use crate::engine::dispatcher::Dispatcher;

/// Starts every instance as a supervised [`WorkflowActor`]. Must be used on an actix arbiter
/// (the service's intakes run there).
#[derive(Debug, Clone, Copy, Default)]
pub struct ActorSpawn;

impl Spawn for ActorSpawn {
    fn spawn(&self, dispatcher: Arc<Dispatcher>, id: String, kind: String) -> Box<dyn Any + Send> {
        let actor = WorkflowActor {
            dispatcher,
            id,
            kind,
        };
        Box::new(Supervisor::start(move |_| actor))
    }
}

pub struct WorkflowActor {
    dispatcher: Arc<Dispatcher>,
    id: String,
    kind: String,
}

impl Actor for WorkflowActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let dispatcher = self.dispatcher.clone();
        let (id, kind) = (self.id.clone(), self.kind.clone());
        let run = async move { dispatcher.run_supervised(&id, &kind).await };
        ctx.spawn(run.into_actor(self).map(|outcome, act, ctx| {
            if let Some(result) = outcome {
                act.dispatcher.finish(&act.id, result);
            }
            // After `finish` no address is left, so the supervisor lets the actor go; after a
            // panic the dispatcher still holds it, so the supervisor restarts it.
            ctx.stop();
        }));
    }
}

impl Supervised for WorkflowActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(workflow_id = %self.id, "restarting workflow actor from the journal");
    }
}
