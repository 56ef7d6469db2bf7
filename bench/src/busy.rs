//! A low-priority busy loop on every CPU, for the c=1 scenarios (SPEC §11): with nothing else
//! running, each request at c=1 wakes CPUs out of idle states, and those wake-ups, not the code
//! under test, would dominate the latency. The spinner runs at `nice -n 19`, so any runnable
//! process preempts it.

use std::process::{Command, Stdio};

use crate::run::Proc;

/// The running busy loop; dropping it kills the spinner.
pub struct BusyLoop {
    _spinner: Proc,
}

impl BusyLoop {
    /// Starts `nice -n 19 layers-bench spin --threads N`, one spinning thread per CPU.
    pub fn start() -> anyhow::Result<BusyLoop> {
        let threads = cpus();
        let child = Command::new("nice")
            .args(["-n", "19"])
            .arg(std::env::current_exe()?)
            .args(["spin", "--threads", &threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        Ok(BusyLoop { _spinner: Proc(child) })
    }
}

/// The number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `layers-bench spin`: spins `threads` threads until killed.
pub fn spin(threads: usize) -> ! {
    for _ in 1..threads {
        std::thread::spawn(spin_forever);
    }
    spin_forever()
}

fn spin_forever() -> ! {
    loop {
        std::hint::spin_loop();
    }
}
