fn main() {
    std::process::exit(mi_flash::cli::main());
}
