//! The one "stop now" of `edgegate connect`, on every system it runs on.
//!
//! Unix: SIGINT (Ctrl-C) and SIGTERM (a service manager, `kill`). Windows:
//! Ctrl-C, Ctrl-Break, closing the console window, logging off and shutting
//! down. On Windows the last three end the process once their handler
//! returns; tokio parks the handler's thread for them, so the session's
//! close still goes out before the process ends (Windows allows about 5 s
//! after a close, and `connect`'s leaving is bounded well below that).
//!
//! The handlers are installed by [`Shutdown::install`], before `connect`
//! prints `ready`: a signal sent as soon as `ready` is read must not find
//! the default action (exit without closing the session).

use anyhow::Context;

/// Installed shutdown handlers; [`Shutdown::recv`] waits for the first.
pub(crate) struct Shutdown {
    #[cfg(unix)]
    signals: [tokio::signal::unix::Signal; 2],
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
    #[cfg(windows)]
    ctrl_break: tokio::signal::windows::CtrlBreak,
    #[cfg(windows)]
    ctrl_close: tokio::signal::windows::CtrlClose,
    #[cfg(windows)]
    ctrl_logoff: tokio::signal::windows::CtrlLogoff,
    #[cfg(windows)]
    ctrl_shutdown: tokio::signal::windows::CtrlShutdown,
}

impl Shutdown {
    /// Take over the signals that mean "stop" (inside a tokio runtime).
    #[cfg(unix)]
    pub(crate) fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(Shutdown {
            signals: [int, term],
        })
    }

    /// Take over the console events that mean "stop" (inside a tokio runtime).
    #[cfg(windows)]
    pub(crate) fn install() -> anyhow::Result<Self> {
        use tokio::signal::windows as w;
        let what = "installing the console control handler";
        Ok(Shutdown {
            ctrl_c: w::ctrl_c().context(what)?,
            ctrl_break: w::ctrl_break().context(what)?,
            ctrl_close: w::ctrl_close().context(what)?,
            ctrl_logoff: w::ctrl_logoff().context(what)?,
            ctrl_shutdown: w::ctrl_shutdown().context(what)?,
        })
    }

    /// Wait until one of the installed signals arrives.
    #[cfg(unix)]
    pub(crate) async fn recv(&mut self) {
        let [int, term] = &mut self.signals;
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }

    /// Wait until one of the installed console events arrives.
    #[cfg(windows)]
    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.ctrl_c.recv() => {}
            _ = self.ctrl_break.recv() => {}
            _ = self.ctrl_close.recv() => {}
            _ = self.ctrl_logoff.recv() => {}
            _ = self.ctrl_shutdown.recv() => {}
        }
    }
}
