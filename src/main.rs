fn main() {
    // Like other command-line tools, stop quietly when the reader of our output goes away
    // (`mi-flash info | head`) instead of failing on every later write.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(mi_flash::cli::main());
}
