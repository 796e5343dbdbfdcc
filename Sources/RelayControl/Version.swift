/// The release version of mcrelay, maintained by hand and bumped with each release.
///
/// One constant for everything that names the build: `mcrelay --version`, the
/// `mcrelay_build_info{version=...}` metric and the flight recorder's manifest. `make deb`
/// refuses to build a package whose debian/changelog version (upstream part) differs, and the
/// package test checks that the installed `mcrelay --version` prints it. No git commit is
/// compiled in: SwiftPM has no way to pass a value into Swift code without a build plugin or
/// a generated (and so changing) source file, and a release binary is identified by this
/// version and the package's own version.
public enum MCRelayVersion {
    public static let current = "0.2.0"
    /// What `mcrelay --version` prints.
    public static let banner = "mcrelay \(current)"
}
