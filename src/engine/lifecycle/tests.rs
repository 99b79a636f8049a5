//! The lifecycle on its own, with no I/O: a model interpreter keeps "the journal" (the last
//! record an [`Effect::Journal`] wrote) apart from the record in memory, and random sequences
//! of what can happen to a run (outcomes, crashes, cancels, shutdowns, panics, redrives) are
//! thrown at it. Whatever the sequence:
//! - nothing is performed that the journal has not recorded as attempted (the durable record
//!   names the action as pending, with at least this many attempts, and is not ended);
//! - a run that fails or is cancelled undoes every step it completed, and one that succeeds
//!   undoes nothing;
//! - once the script runs out, the instance ends in exactly one terminal status, and an
//!   ended generation never changes again.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::contract::{Act, Decision, Flow, RetryPolicy, StepContext, Typed};
use crate::journal::Origin;

/// Three handler steps `a`, `b`, `c`, each undone by `undo-<step>`, with a few retries.
struct Three;

#[async_trait::async_trait]
impl Flow for Three {
    const KIND: &'static str = "three";
    type State = Vec<String>;
    type Step = String;

    fn start(&self, _e: &Value, _p: &Value) -> Result<(Vec<String>, Decision<String>), String> {
        Ok((vec![], Next::Run(act("a"))))
    }

    fn advance(
        &self,
        done: &mut Vec<String>,
        step: String,
        outcome: Result<Value, StepError>,
    ) -> Decision<String> {
        if let Err(e) = outcome {
            return Next::Fail(format!("{step}: {}", e.message));
        }
        done.push(step.clone());
        match step.as_str() {
            "a" => Next::Run(act("b")),
            "b" => Next::Run(act("c")),
            _ => Next::Complete(json!({"done": done})),
        }
    }

    fn compensation(&self, done: &Vec<String>) -> Vec<Act<String>> {
        done.iter()
            .rev()
            .map(|s| act(&format!("undo-{s}")))
            .collect()
    }

    async fn perform(&self, _ctx: StepContext<'_>, _step: &String) -> Result<Value, StepError> {
        unreachable!("the model interpreter performs nothing")
    }
}

fn act(name: &str) -> Act<String> {
    Act::handler(name, name.to_owned()).retry(RetryPolicy {
        initial_interval: Duration::from_millis(100),
        coefficient: 2.0,
        max_interval: Duration::from_secs(1),
        max_attempts: 3,
        deadline: None,
    })
}

/// What happens next to the run.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// The attempt being performed succeeds.
    Ok,
    /// It fails and may be retried (after a short back-off).
    Retryable,
    /// It fails, and the other side asks for a wait longer than the process keeps a run.
    RetryAfterLong,
    /// It fails for good.
    Permanent,
    /// The process is killed: everything not journaled is lost; a redelivery resumes.
    Crash,
    /// An operator cancels the run.
    Cancel,
    /// Shutdown begins; the run is released and redelivered later.
    Shutdown,
    /// The attempt panics.
    Panic,
    /// A dead-lettered or cancelled instance's event is redriven.
    Redrive,
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        6 => Just(Event::Ok),
        2 => Just(Event::Retryable),
        1 => Just(Event::RetryAfterLong),
        1 => Just(Event::Permanent),
        2 => Just(Event::Crash),
        1 => Just(Event::Cancel),
        1 => Just(Event::Shutdown),
        1 => Just(Event::Panic),
        1 => Just(Event::Redrive),
    ];
    proptest::collection::vec(event, 0..60)
}

/// The model: the journal, the run's memory, the clock, and what was performed.
struct Model<'a> {
    logic: &'a dyn Workflow,
    options: &'a EngineOptions,
    journal: Record,
    memory: Record,
    lifecycle: Lifecycle<'a>,
    now: u64,
    script: std::vec::IntoIter<Event>,
}

impl<'a> Model<'a> {
    fn new(logic: &'a dyn Workflow, options: &'a EngineOptions, script: Vec<Event>) -> Self {
        let now = 1_000_000;
        let mut record = Record::new(
            "r:1",
            "three",
            Origin::default(),
            json!({"id": "1"}),
            json!({}),
        );
        let mut lifecycle = Lifecycle::seeded(Some(logic), options, 7);
        let started = lifecycle.start(&mut record, now);
        assert_eq!(started, Started::Run { fresh: true });
        lifecycle.resume_fresh(&record);
        Model {
            logic,
            options,
            journal: record.clone(),
            memory: record,
            lifecycle,
            now,
            script: script.into_iter(),
        }
    }

    /// What comes next: the script's, then success for ever.
    fn next(&mut self) -> Event {
        self.script.next().unwrap_or(Event::Ok)
    }

    /// A new process (or a redelivery) takes the record from the journal.
    fn reload(&mut self) {
        self.memory = self.journal.clone();
        self.lifecycle = Lifecycle::seeded(Some(self.logic), self.options, self.now);
    }

    fn journaled(&mut self) -> Result<(), TestCaseError> {
        let before = &self.journal;
        if before.status.is_terminal() && before.generation == self.memory.generation {
            prop_assert_eq!(
                &before.status,
                &self.memory.status,
                "an ended run's status changed"
            );
        }
        self.journal = self.memory.clone();
        Ok(())
    }

    /// Runs the instance until the script is used up and it has ended; the number of runs.
    fn run(&mut self) -> Result<u32, TestCaseError> {
        let mut input = Input::TURN;
        let mut runs = 0;
        for _ in 0..2_000 {
            let mut next = None;
            let effects = self
                .lifecycle
                .apply(&mut self.memory, input.clone(), self.now);
            prop_assert!(
                matches!(
                    effects.last(),
                    Some(
                        Effect::Perform { .. }
                            | Effect::BackOff(_)
                            | Effect::Turn
                            | Effect::Stop(_)
                    )
                ),
                "effects end in what comes next: {:?}",
                effects
            );
            for effect in effects {
                self.now += 10;
                match effect {
                    Effect::Journal(_) => self.journaled()?,
                    Effect::Note(_) => {}
                    Effect::Turn => next = Some(Input::TURN),
                    Effect::BackOff(delay) => {
                        self.now += delay.as_millis() as u64;
                        next = Some(Input::TURN);
                    }
                    Effect::Perform {
                        action, attempt, ..
                    } => {
                        let durable = &self.journal;
                        prop_assert!(!durable.status.is_terminal(), "performed after the end");
                        prop_assert_eq!(durable.pending.as_ref(), Some(&action), "not journaled");
                        let step = durable.step(&action.name);
                        prop_assert!(
                            step.is_some_and(|s| s.attempts >= attempt),
                            "attempt {} of {} performed before it was journaled",
                            attempt,
                            action.name
                        );
                        next = Some(match self.next() {
                            Event::Ok => Input::Outcome(Ok(json!({"ok": action.name}))),
                            Event::Retryable => Input::Outcome(Err(StepError::retryable("busy"))),
                            Event::RetryAfterLong => {
                                Input::Outcome(Err(StepError::retryable("throttled")
                                    .after(Some(Duration::from_secs(60)))))
                            }
                            Event::Permanent => Input::Outcome(Err(StepError::permanent("no"))),
                            Event::Cancel => Input::Turn {
                                cancel: Some(Cancel {
                                    by: "test".into(),
                                    at_ms: self.now,
                                }),
                                shutting_down: false,
                            },
                            Event::Shutdown => Input::Turn {
                                cancel: None,
                                shutting_down: true,
                            },
                            Event::Crash | Event::Redrive => {
                                runs += 1;
                                self.reload();
                                Input::TURN
                            }
                            Event::Panic => {
                                runs += 1;
                                let mut record = self.journal.clone();
                                let lifecycle = Lifecycle::new(Some(self.logic), self.options);
                                let failed = lifecycle.panicked(&mut record, "boom", self.now);
                                self.memory = record;
                                self.journaled()?;
                                if failed.is_some() {
                                    self.dead_letter();
                                }
                                self.reload();
                                Input::TURN
                            }
                        });
                    }
                    Effect::Stop(result) => {
                        runs += 1;
                        match result {
                            RunResult::Failed(_) => self.dead_letter(),
                            RunResult::RetryLater(d) => self.now += d.as_millis() as u64,
                            RunResult::Released | RunResult::JournalError(_) => {}
                            RunResult::Succeeded
                            | RunResult::DeadLettered
                            | RunResult::Cancelled => {
                                // Ended: only a redrive of a failed or cancelled run goes on.
                                let redrive =
                                    matches!(self.script.as_slice().first(), Some(Event::Redrive));
                                if !redrive || self.journal.status == Status::Succeeded {
                                    return Ok(runs);
                                }
                                self.next();
                                self.redrive();
                            }
                        }
                        self.reload();
                        next = Some(Input::TURN);
                    }
                }
            }
            input = next.expect("checked above");
        }
        Err(TestCaseError::fail("the run did not end in 2000 inputs"))
    }

    /// The dispatcher hands a failed run to the DLQ.
    fn dead_letter(&mut self) {
        if let Status::Failed { reason } = &self.journal.status {
            let reason = reason.clone();
            dead_lettered(&mut self.journal, &reason, self.now);
        }
    }

    /// The DLQ entry comes back: the instance starts its next generation.
    fn redrive(&mut self) {
        let input = self.journal.input.clone();
        let params = self.journal.params.clone();
        let arrival = Arrival {
            message_id: "m2",
            input: &input,
            params: &params,
            trace: None,
            redrive: Some(Redrive::Any),
        };
        let found = Ok(Some(self.journal.clone()));
        if let Delivery::Start(mut record) = arrive(found, arrival, || unreachable!(), self.now) {
            let mut lifecycle = Lifecycle::seeded(Some(self.logic), self.options, self.now);
            if let Started::Run { .. } = lifecycle.start(&mut record, self.now) {
                self.journal = *record;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_journals_before_acting_compensates_and_ends_once(script in events()) {
        let logic = Typed(Three);
        let options = EngineOptions::default();
        let mut model = Model::new(&logic, &options, script);
        model.run()?;
        let end = &model.journal;
        prop_assert!(end.status.is_terminal(), "ended {:?}", end.status);
        let done: Vec<&str> = end
            .steps
            .iter()
            .filter(|s| !s.compensation && s.output.is_some())
            .map(|s| s.name.as_str())
            .collect();
        let undone: Vec<&str> = end
            .steps
            .iter()
            .filter(|s| s.compensation && s.finished_ms.is_some())
            .map(|s| s.name.as_str())
            .collect();
        match &end.status {
            Status::Succeeded => {
                prop_assert_eq!(done, vec!["a", "b", "c"]);
                prop_assert!(undone.is_empty(), "a success undid {:?}", undone);
            }
            _ => {
                for step in done {
                    let undo = format!("{COMPENSATE}undo-{step}");
                    prop_assert!(
                        undone.contains(&undo.as_str()),
                        "{} was done and never undone ({:?}; {:?})",
                        step,
                        end.status,
                        undone
                    );
                }
            }
        }
        prop_assert!(end.pending.is_none() && end.undo.is_empty(), "ended with work left");
    }
}

#[test]
fn a_clean_run_costs_one_write_a_step() {
    let logic = Typed(Three);
    let options = EngineOptions::default();
    let mut record = Record::new("r:1", "three", Origin::default(), json!({}), json!({}));
    let mut lifecycle = Lifecycle::seeded(Some(&logic), &options, 1);
    assert_eq!(
        lifecycle.start(&mut record, 0),
        Started::Run { fresh: true }
    );
    lifecycle.resume_fresh(&record);
    let mut writes = 1;
    let mut input = Input::TURN;
    let result = loop {
        let effects = lifecycle.apply(&mut record, input, 1);
        writes += effects
            .iter()
            .filter(|e| matches!(e, Effect::Journal(_)))
            .count();
        input = match effects.last() {
            Some(Effect::Perform { .. }) => Input::Outcome(Ok(json!({}))),
            Some(Effect::Turn) => Input::TURN,
            Some(Effect::Stop(r)) => break r.clone(),
            other => panic!("unexpected {other:?}"),
        };
    };
    assert_eq!(result, RunResult::Succeeded);
    assert_eq!(
        writes, 4,
        "the start, then one write per step's outcome and decision"
    );
}

#[test]
fn a_cancel_while_waiting_compensates_before_it_ends() {
    let logic = Typed(Three);
    let options = EngineOptions::default();
    let mut record = Record::new("r:1", "three", Origin::default(), json!({}), json!({}));
    let mut lifecycle = Lifecycle::seeded(Some(&logic), &options, 1);
    lifecycle.start(&mut record, 0);
    lifecycle.resume_fresh(&record);
    let effects = lifecycle.apply(&mut record, Input::TURN, 1);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Perform { attempt: 1, .. }]
    ));
    let slow = StepError::retryable("throttled").after(Some(Duration::from_secs(60)));
    let effects = lifecycle.apply(&mut record, Input::Outcome(Err(slow)), 2);
    assert!(
        matches!(effects.last(), Some(Effect::Stop(RunResult::RetryLater(d))) if *d == Duration::from_secs(60)),
        "{effects:?}"
    );
    assert_eq!(record.status, Status::Waiting { until_ms: 60_002 });
    // Back early, with a cancel: nothing was done, so nothing is undone; it ends cancelled.
    let cancel = Cancel {
        by: "cli".into(),
        at_ms: 3,
    };
    let input = Input::Turn {
        cancel: Some(cancel),
        shutting_down: false,
    };
    let effects = lifecycle.apply(&mut record, input, 3);
    assert_eq!(effects[1], Effect::Journal(Checkpoint::Cancel));
    assert!(
        matches!(record.status, Status::Cancelled { .. }),
        "{:?}",
        record.status
    );
    let effects = lifecycle.apply(&mut record, Input::TURN, 4);
    assert_eq!(effects, vec![Effect::Stop(RunResult::Cancelled)]);
}

#[test]
fn an_unknown_kind_fails_without_running_anything() {
    let options = EngineOptions::default();
    let mut record = Record::new("r:1", "gone", Origin::default(), json!({}), json!({}));
    let mut lifecycle = Lifecycle::new(None, &options);
    assert!(matches!(
        lifecycle.start(&mut record, 0),
        Started::Ended(RunResult::Failed(f)) if f.reason.contains("\"gone\" is not in this build")
    ));
    record.pending = None;
    let effects = lifecycle.apply(&mut record, Input::TURN, 1);
    assert!(matches!(
        effects.as_slice(),
        [
            Effect::Journal(Checkpoint::Ended),
            Effect::Stop(RunResult::Failed(_))
        ]
    ));
}

/// Ticks for ever in spirit: `tick`, and after every third one it continues as new; it ends
/// after `last` ticks.
struct Ticker {
    last: u32,
}

#[async_trait::async_trait]
impl Flow for Ticker {
    const KIND: &'static str = "ticker";
    type State = u32;
    type Step = ();

    fn start(&self, _e: &Value, _p: &Value) -> Result<(u32, Decision<()>), String> {
        Ok((0, Next::Run(Act::handler("tick", ()))))
    }

    fn advance(&self, ticks: &mut u32, _: (), _: Result<Value, StepError>) -> Decision<()> {
        *ticks += 1;
        if *ticks == self.last {
            return Next::Complete(json!({"ticks": *ticks}));
        }
        let next = Act::handler(format!("tick#{}", *ticks % 3), ());
        if (*ticks).is_multiple_of(3) {
            Next::Continue(next)
        } else {
            Next::Run(next)
        }
    }

    fn compensation(&self, _: &u32) -> Vec<Act<()>> {
        vec![]
    }

    async fn perform(&self, _ctx: StepContext<'_>, _step: &()) -> Result<Value, StepError> {
        unreachable!("the test performs nothing")
    }
}

#[test]
fn a_run_that_continues_as_new_keeps_a_bounded_history_with_new_keys() {
    let logic = Typed(Ticker { last: 20 });
    let options = EngineOptions::default();
    let mut record = Record::new("r:1", "ticker", Origin::default(), json!({}), json!({}));
    let mut lifecycle = Lifecycle::seeded(Some(&logic), &options, 1);
    lifecycle.start(&mut record, 0);
    lifecycle.resume_fresh(&record);
    let mut keys = std::collections::BTreeSet::new();
    let mut input = Input::TURN;
    let mut most = 0;
    let result = loop {
        let effects = lifecycle.apply(&mut record, input, 1);
        most = most.max(record.steps.len());
        input = match effects.last() {
            Some(Effect::Perform { action, .. }) => {
                let key = record.step(&action.name).unwrap().key.clone();
                assert!(keys.insert(key), "a key used twice: {}", action.name);
                Input::Outcome(Ok(json!({})))
            }
            Some(Effect::Turn) => Input::TURN,
            Some(Effect::Stop(r)) => break r.clone(),
            other => panic!("unexpected {other:?}"),
        };
    };
    assert_eq!(result, RunResult::Succeeded);
    assert_eq!(record.output, Some(json!({"ticks": 20})));
    assert_eq!(keys.len(), 20, "one new key a tick");
    assert_eq!(record.continued, 6, "ticks 3, 6, … 18 continued");
    assert!(most <= 3, "the history grew to {most} steps");
    // Read back by a later build (or after a crash): the count survives the journal's JSON.
    let again: Record = serde_json::from_value(serde_json::to_value(&record).unwrap()).unwrap();
    assert_eq!(again.continued, 6);
}
