//! The bounded set of recent user-message uuids that drops echoes.

use std::collections::{HashSet, VecDeque};

/// A bounded set of recently seen ids, oldest forgotten first.
#[derive(Debug)]
pub struct RecentIds {
    set: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
    cap: usize,
}

impl RecentIds {
    /// A set remembering the last `cap` ids (at least one).
    pub fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Remember `id`; false when it was seen already.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.into());
        self.order.push_back(id.into());
        true
    }
}
