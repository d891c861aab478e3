use super::*;

fn note(from: &str, epoch: Epoch, state: SessionState) -> StateNote {
    StateNote {
        from: from.into(),
        session: Arc::from("s1"),
        epoch,
        state,
        last_error: None,
    }
}

#[test]
fn a_session_never_held_here_announces_nothing() {
    let mut c = ClusterSlot::default();
    assert_eq!(c.announcing(&SessionState::Connected, &None, false), None);
    assert_eq!(c.announcing(&SessionState::Connected, &None, true), None);
}

#[test]
fn a_held_session_announces_each_change_once_under_its_epoch() {
    let mut c = ClusterSlot::default();
    c.owned(4);
    let err = Some("refused".to_owned());
    assert_eq!(
        c.announcing(&SessionState::Connecting, &None, false),
        Some(4)
    );
    assert_eq!(c.announcing(&SessionState::Connecting, &None, false), None);
    assert_eq!(
        c.announcing(&SessionState::Connecting, &err, false),
        Some(4),
        "a new last error is news"
    );
    assert_eq!(
        c.announcing(&SessionState::Connecting, &err, true),
        Some(4),
        "asked again"
    );
    assert_eq!(
        c.announcing(&SessionState::Connected, &None, false),
        Some(4)
    );
    c.owned(9);
    assert_eq!(
        c.announcing(&SessionState::Connected, &None, false),
        Some(9),
        "a new lease announces its first state even if unchanged"
    );
}

#[test]
fn the_owner_s_state_is_kept_until_this_instance_takes_the_session() {
    let mut c = ClusterSlot::default();
    assert!(c.heard(note("b", 3, SessionState::Connecting)));
    assert!(c.heard(note("b", 3, SessionState::Connected)));
    assert_eq!(c.remote(), Some((&SessionState::Connected, &None)));
    assert!(
        !c.heard(note("b", 3, SessionState::Connected)),
        "a repetition (a resync's answer) is not news"
    );
    c.owned(4);
    assert_eq!(c.remote(), None, "held here: its own state wins");
    assert!(
        !c.heard(note("b", 3, SessionState::Disconnected)),
        "the old owner's last words, heard late, are stale"
    );
    assert_eq!(c.remote(), None);
}

#[test]
fn a_new_owner_s_state_wins_over_an_older_owner_s_heard_late() {
    let mut c = ClusterSlot::default();
    assert!(c.heard(note("a", 5, SessionState::Connected)));
    assert!(c.heard(note("b", 6, SessionState::Connecting)));
    assert!(!c.heard(note("a", 5, SessionState::Disconnected)));
    assert_eq!(c.remote(), Some((&SessionState::Connecting, &None)));
    // This instance held it at 7 and let it go; the next owner's notes count again.
    c.owned(7);
    assert!(!c.heard(note("b", 6, SessionState::Connected)));
    assert!(c.heard(note("a", 8, SessionState::Connecting)));
    assert_eq!(c.remote(), Some((&SessionState::Connecting, &None)));
}

#[test]
fn one_adoption_at_a_time_and_it_ends_once() {
    let mut slot = ClusterSlot::default();
    assert!(!slot.is_adopting());
    assert!(slot.start_adopting(), "the first claim adopts");
    assert!(
        !slot.start_adopting(),
        "a claim again meanwhile does not adopt twice"
    );
    assert!(
        slot.is_adopting(),
        "a renewal meanwhile does not start the session"
    );
    assert!(!slot.is_adopted(), "not started while adopting");
    assert!(!slot.adopted(true), "nothing to adopt again");
    assert!(!slot.is_adopting());
    assert!(slot.is_adopted(), "adopted: it may start");
    assert!(slot.start_adopting(), "a later claim adopts again");
}

#[test]
fn a_session_starts_only_once_adopted_under_the_lease_held_now() {
    let mut slot = ClusterSlot::default();
    assert!(!slot.is_adopted(), "never adopted: it may not start");
    slot.owned(1);
    assert!(slot.start_adopting());
    assert!(!slot.adopted(false), "the lease let go while it read");
    assert!(!slot.is_adopted());
    assert!(slot.start_adopting());
    assert!(!slot.adopted(true));
    assert!(slot.is_adopted());
    slot.disowned();
    assert!(
        !slot.is_adopted(),
        "its lease let go: adopted again before it starts"
    );
    // Let go and taken again while an adoption read: that read may be stale.
    assert!(slot.start_adopting());
    slot.disowned();
    slot.owned(2);
    assert!(!slot.start_adopting(), "one adoption at a time");
    assert!(slot.adopted(true), "adopted again");
    assert!(!slot.is_adopted());
    assert!(slot.start_adopting());
    assert!(!slot.adopted(true));
    assert!(slot.is_adopted());
}
