//! The floor of a replicated event, measured for real: N replicas forked from
//! this process meet the voter at every call. Alone in its test binary because
//! it forks the whole process, which other tests that fork and compare memory
//! would see.

use romain_engine::floor::measure;

#[test]
fn the_floor_is_measured_for_one_two_and_three_replicas() {
    for replicas in 1..=3 {
        let per_event = measure(replicas, 100).unwrap();
        assert!(!per_event.is_zero(), "{replicas} replicas");
    }
}
