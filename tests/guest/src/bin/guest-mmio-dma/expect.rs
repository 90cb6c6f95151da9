//! Checks that a request was refused with the error the scheme must give.

use std::io;

use guest_harness::guest::report::StepResult;
use scheme_runtime::errno_name;

/// `result` is the error `errno`, not a success and not another error.
pub fn refused<T>(result: io::Result<T>, errno: i32) -> StepResult<()> {
    let expected = errno_name(errno);
    match result {
        Ok(_) => Err(format!("succeeded; expected {expected}").into()),
        Err(err) if err.raw_os_error() == Some(errno) => Ok(()),
        Err(err) => Err(format!("failed with {err}; expected {expected}").into()),
    }
}

/// `actual` equals `expected`, or an error naming `what`.
pub fn equal<T: PartialEq + std::fmt::Debug>(what: &str, actual: T, expected: T) -> StepResult<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!("{what} is {actual:x?}, expected {expected:x?}").into())
    }
}
