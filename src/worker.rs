//! Background threads: the one shape every plugin's slow work takes. A [`Worker`] is one thread (a
//! store: the chat writer, the world's positions, the commands' database jobs) or a pool of them (the
//! auth workers) fed by one job queue; [`Threads`] are threads without a queue (the HTTPS runtime, the
//! bus's subscriber). Either is stopped once, by [`Stop::stop`]: the queue is closed so the threads
//! finish every job already queued, a [`Stopping`] flag tells loops that wait (on a database that is
//! away, on Redis) to give up soon, an optional hook runs (a runtime's graceful shutdown), and every
//! thread is joined, a panic logged with the thread's name. Dropping one stops it too, so a server that
//! exits early never leaves a thread behind.
//!
//! A plugin keeps its worker in a resource of its own and has it stopped with the server by
//! [`stop_at_shutdown::<ThatResource>(app)`](stop_at_shutdown): when [`ServerStopping`] is triggered,
//! after every player left, so what their leaving queued is stored first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use bevy::ecs::component::Mutable;
use bevy::prelude::*;
use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Triggered once, after every client was disconnected and before the app exits (`crate::shutdown`):
/// plugins observe it to finish what they hold.
#[derive(Event, Debug)]
pub struct ServerStopping;

/// Stops resource `R`'s threads on [`ServerStopping`]. Each plugin with a worker calls this once.
pub fn stop_at_shutdown<R: Resource + Component<Mutability = Mutable> + Stop>(app: &mut App) {
    app.add_observer(|_: On<ServerStopping>, mut resource: ResMut<R>| resource.stop());
}

/// Something with threads to stop when the server stops.
pub trait Stop {
    /// Finishes what is queued and joins the threads (idempotent: the second call does nothing).
    fn stop(&mut self);
}

/// Set once the server is stopping: a thread waiting on something that is away (the database, Redis)
/// gives up after a while instead of holding the exit forever.
#[derive(Clone, Debug, Default)]
pub struct Stopping(Arc<AtomicBool>);

impl Stopping {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for functions that take one (`db::write_until_done`).
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Named threads, joined once when stopped (or dropped).
#[derive(Default)]
pub struct Threads {
    threads: Vec<(String, JoinHandle<()>)>,
    stopping: Stopping,
    on_stop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Threads {
    /// Starts a thread called `name` running `body`, which should return soon after [`Stopping`] is set.
    /// Panics if the system cannot start a thread (see [`Threads::try_spawn`]).
    pub fn spawn(
        self,
        name: impl Into<String>,
        body: impl FnOnce(Stopping) + Send + 'static,
    ) -> Self {
        let name = name.into();
        self.try_spawn(name.clone(), body)
            .unwrap_or_else(|error| panic!("spawning the {name} thread: {error}"))
    }

    /// [`Threads::spawn`], or the error if the system cannot start a thread.
    pub fn try_spawn(
        mut self,
        name: impl Into<String>,
        body: impl FnOnce(Stopping) + Send + 'static,
    ) -> std::io::Result<Self> {
        let name = name.into();
        let stopping = self.stopping.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(stopping))?;
        self.threads.push((name, thread));
        Ok(self)
    }

    /// Runs `hook` when stopping, after the flag is set and before the threads are joined (to tell a
    /// runtime to shut down, say).
    pub fn on_stop(mut self, hook: impl FnOnce() + Send + Sync + 'static) -> Self {
        self.on_stop = Some(Box::new(hook));
        self
    }

    /// The flag the threads see.
    pub fn stopping(&self) -> Stopping {
        self.stopping.clone()
    }
}

impl Stop for Threads {
    fn stop(&mut self) {
        self.stopping.set();
        if let Some(hook) = self.on_stop.take() {
            hook();
        }
        for (name, thread) in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!(thread = name, "a background thread panicked");
            }
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sending end of a [`Worker`]'s queue, to hand to other threads (the HTTPS endpoint queues on the
/// auth workers); closed for every holder at once when the worker stops.
pub struct Queue<J>(Arc<RwLock<Option<Sender<J>>>>);

impl<J> Clone for Queue<J> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<J> std::fmt::Debug for Queue<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

impl<J> Queue<J> {
    /// Queues a job; gives it back if the queue is full or the worker has stopped.
    pub fn send(&self, job: J) -> Result<(), J> {
        let jobs = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*jobs {
            Some(jobs) => jobs.try_send(job).map_err(|error| match error {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            }),
            None => Err(job),
        }
    }

    fn close(&self) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// Threads taking jobs from one queue (see the module docs).
pub struct Worker<J> {
    queue: Queue<J>,
    /// The receiving end, kept to count the jobs waiting.
    waiting: Receiver<J>,
    threads: Threads,
}

impl<J: Send + 'static> Worker<J> {
    /// One thread called `name` running `body` on the queue, which holds at most `capacity` jobs
    /// (`None`: unbounded, for a store whose jobs the tick must never lose).
    pub fn single(
        name: &str,
        capacity: Option<usize>,
        body: impl FnOnce(Receiver<J>, Stopping) + Send + 'static,
    ) -> Self {
        let (queue, waiting) = Self::channel(capacity);
        let jobs = waiting.clone();
        let threads = Threads::default().spawn(name, move |stopping| body(jobs, stopping));
        Self {
            queue,
            waiting,
            threads,
        }
    }

    /// `count` threads called `name-0`, `name-1`, … sharing the queue (see [`Worker::single`]).
    pub fn pool(
        name: &str,
        count: usize,
        capacity: Option<usize>,
        body: impl Fn(Receiver<J>, Stopping) + Send + Sync + 'static,
    ) -> Self {
        let (queue, waiting) = Self::channel(capacity);
        let body = Arc::new(body);
        let threads = (0..count).fold(Threads::default(), |threads, i| {
            let (jobs, body) = (waiting.clone(), body.clone());
            threads.spawn(format!("{name}-{i}"), move |stopping| body(jobs, stopping))
        });
        Self {
            queue,
            waiting,
            threads,
        }
    }

    fn channel(capacity: Option<usize>) -> (Queue<J>, Receiver<J>) {
        let (tx, rx) = match capacity {
            Some(capacity) => crossbeam_channel::bounded(capacity),
            None => crossbeam_channel::unbounded(),
        };
        (Queue(Arc::new(RwLock::new(Some(tx)))), rx)
    }

    /// Another thread beside the workers, stopped with them (it gets no jobs).
    pub fn with_thread(
        mut self,
        name: impl Into<String>,
        body: impl FnOnce(Stopping) + Send + 'static,
    ) -> Self {
        self.threads = std::mem::take(&mut self.threads).spawn(name, body);
        self
    }

    /// Queues a job; gives it back if the queue is full or the worker has stopped.
    pub fn send(&self, job: J) -> Result<(), J> {
        self.queue.send(job)
    }

    /// A handle to queue jobs from elsewhere.
    pub fn queue(&self) -> Queue<J> {
        self.queue.clone()
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.waiting.len()
    }
}

impl<J> Stop for Worker<J> {
    fn stop(&mut self) {
        self.queue.close();
        self.threads.stop();
    }
}

impl<J> Drop for Worker<J> {
    fn drop(&mut self) {
        // Close the queue first: the threads finish what is queued and end; `Threads`' own drop joins.
        self.queue.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn stopping_finishes_every_queued_job_then_joins() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let seen = done.clone();
        let mut worker = Worker::single("test-store", None, move |jobs, _| {
            for job in jobs {
                std::thread::sleep(std::time::Duration::from_millis(1));
                seen.lock().unwrap().push(job);
            }
        });
        for job in 0..20 {
            worker.send(job).unwrap();
        }
        worker.stop();
        assert_eq!(*done.lock().unwrap(), (0..20).collect::<Vec<_>>());
        assert_eq!(worker.send(99), Err(99), "a stopped worker takes no job");
        worker.stop();
    }

    #[test]
    fn a_full_queue_gives_the_job_back_and_every_holder_sees_it_closed() {
        let (release, wait) = crossbeam_channel::bounded::<()>(0);
        let mut worker = Worker::pool("test-pool", 2, Some(1), move |jobs: Receiver<u32>, _| {
            for _ in jobs {
                let _ = wait.recv();
            }
        });
        let queue = worker.queue();
        // Two threads each hold a job; one more waits; the next is refused.
        let mut refused = None;
        for job in 0..10 {
            if let Err(job) = queue.send(job) {
                refused = Some(job);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(refused.is_some(), "the bound holds");
        drop(release);
        worker.stop();
        assert_eq!(queue.send(1), Err(1));
    }

    #[test]
    fn threads_see_the_flag_and_the_hook_runs_before_the_join() {
        let hooked = Arc::new(AtomicBool::new(false));
        let flag = hooked.clone();
        let mut threads = Threads::default()
            .spawn("test-loop", |stopping| {
                while !stopping.is_set() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
            .on_stop(move || flag.store(true, Ordering::SeqCst));
        threads.stop();
        assert!(hooked.load(Ordering::SeqCst));
    }
}
