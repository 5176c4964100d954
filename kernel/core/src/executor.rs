//! The cooperative executor: boxed futures polled round-robin.
//!
//! There are no wakers to track: every pass polls every live task once, and a task
//! waiting on IPC returns `Pending` at once. With a handful of tasks this costs little
//! and keeps every wait observable: the kernel checks deadlines on each pass.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use ipc::ServiceId;

pub(crate) struct Task {
    pub(crate) id: ServiceId,
    future: Pin<Box<dyn Future<Output = ()>>>,
}

#[derive(Default)]
pub(crate) struct Executor {
    tasks: Vec<Task>,
}

impl Executor {
    pub(crate) fn push(&mut self, id: ServiceId, future: impl Future<Output = ()> + 'static) {
        self.tasks.push(Task {
            id,
            future: Box::pin(future),
        });
    }

    /// Polls every live task once; returns the ids of those that finished.
    pub(crate) fn poll_all(
        &mut self,
        mut around: impl FnMut(ServiceId, &mut dyn FnMut() -> Poll<()>),
    ) -> Vec<ServiceId> {
        let mut context = Context::from_waker(Waker::noop());
        let mut finished = Vec::new();
        for task in &mut self.tasks {
            let mut outcome = Poll::Pending;
            let future = &mut task.future;
            around(task.id, &mut || {
                outcome = future.as_mut().poll(&mut context);
                outcome
            });
            if outcome.is_ready() {
                finished.push(task.id);
            }
        }
        self.tasks.retain(|task| !finished.contains(&task.id));
        finished
    }

    pub(crate) fn contains(&self, id: ServiceId) -> bool {
        self.tasks.iter().any(|task| task.id == id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// A future that is pending exactly once: lets every other task run a pass.
pub(crate) struct YieldNow(bool);

impl YieldNow {
    pub(crate) fn new() -> Self {
        Self(false)
    }
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}
