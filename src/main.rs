fn main() -> std::process::ExitCode {
    queuegate::cli::main()
}
