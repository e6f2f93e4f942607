// swift-tools-version:6.1
import PackageDescription
#if os(Linux)
import Glibc
#endif

/// How the `ferrymail` executable is linked on Linux, for its resident size:
/// every run maps most of the binary, so what the loader must read counts.
/// - lld (shipped with the Swift toolchain) instead of gold, for the last one;
/// - `--no-export-dynamic`: the Swift static-stdlib link exports every symbol
///   of the executable (2.5 MB of symbol tables the loader searches) though
///   nothing looks them up;
/// - `-z pack-relative-relocs` (DT_RELR), only where the C library can load
///   it (glibc 2.36, Debian 12): 110,000 relative relocations take 22 KB
///   instead of 2.6 MB, all of which the loader reads at every start.
/// A first sync of 200,000 messages peaked at 54–56 MB resident instead of 59–63.
let compactLinking: [LinkerSetting] = {
    #if os(Linux)
    // "glibc 2.36"; empty on another C library, which then gets no RELR.
    var buffer = [CChar](repeating: 0, count: 64)
    let text = confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count) > 0 ? String(cString: buffer) : ""
    let version = text.hasPrefix("glibc ") ? text.dropFirst(6).split(separator: ".").compactMap { Int($0) } : []
    let relr = version.count >= 2 && (version[0], version[1]) >= (2, 36)
    // Toolchains from swift.org ship ld.lld beside swift; without it, gold
    // still drops the symbol exports.
    let path = getenv("PATH").map { String(cString: $0) } ?? ""
    let lld = path.split(separator: ":").contains { access("\($0)/ld.lld", X_OK) == 0 }
    guard lld else { return [.unsafeFlags(["-Xlinker", "--no-export-dynamic"])] }
    return [.unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-export-dynamic"]
                         + (relr ? ["-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"] : []))]
    #else
    return []
    #endif
}()

// Dependencies are kept lean on purpose: every package here is rebuilt from a
// fresh clone by CI on a 2-core machine.
let package = Package(
    name: "ferrymail",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ferrymail", targets: ["ferrymail"]),
        .library(name: "IMAPCodec", targets: ["IMAPCodec"]),
        .library(name: "IMAPClient", targets: ["IMAPClient"]),
        .library(name: "Maildir", targets: ["Maildir"]),
        .library(name: "SyncState", targets: ["SyncState"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .target(
            name: "IMAPCodec",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        // SHA-256 from the system libcrypto (libssl-dev): NIOSSL already compiles one
        // BoringSSL; swift-crypto would compile a second one on every CI run.
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto"),
        .target(name: "Digest", dependencies: ["CLibCrypto"]),
        // glibc's mallopt and malloc_trim (see MemoryTuning in the executable).
        .systemLibrary(name: "CMalloc"),
        .target(
            name: "IMAPClient",
            dependencies: [
                "IMAPCodec",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "CompressNIO", package: "compress-nio"),
                "Digest",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Maildir",
            dependencies: [.product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "SyncState",
            dependencies: [.product(name: "GRDB", package: "GRDB.swift")]
        ),
        .target(
            name: "Configuration",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")]
        ),
        // The engine core knows only the MailStore contract and the state; concrete
        // stores live in MailStores so the reconciler and executor build and test
        // without NIO or the filesystem store.
        .target(
            name: "SyncEngine",
            dependencies: ["SyncState", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "MailStores",
            dependencies: [
                "SyncEngine", "IMAPClient", "Maildir", "SyncState", "Configuration",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Archive",
            dependencies: [
                "SyncEngine", "SyncState", "Digest",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["FORMAT.md"]
        ),
        .target(
            name: "Service",
            dependencies: [
                "SyncEngine", "MailStores", "Configuration", "SyncState", "IMAPClient", "IMAPCodec",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "ferrymail",
            dependencies: [
                "IMAPClient", "Maildir", "SyncState", "Configuration", "SyncEngine", "MailStores", "Archive", "Service", "CMalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: compactLinking
        ),
        .executableTarget(
            name: "ferrymail-bench",
            dependencies: ["IMAPCodec", "IMAPClient", "Maildir", "SyncState", "TestSupport", "Archive", "SyncEngine", "Service"]
        ),
        .executableTarget(
            name: "ferrymail-demo",
            dependencies: [
                "IMAPClient", "Maildir", "SyncState", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "IMAPParserFuzz",
            dependencies: ["IMAPCodec"],
            path: "Fuzz/IMAPParserFuzz"
        ),
        .target(
            name: "TestSupport",
            dependencies: [],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "IMAPCodecTests",
            dependencies: ["IMAPCodec", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "IMAPClientTests",
            dependencies: [
                "IMAPClient", "IMAPCodec", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "MaildirTests",
            dependencies: [
                "Maildir", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "ConfigurationTests",
            dependencies: ["Configuration"]
        ),
        .testTarget(
            name: "SyncEngineTests",
            dependencies: ["SyncEngine", "SyncState", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "MailStoresTests",
            dependencies: ["MailStores", "SyncEngine", "SyncState", "IMAPClient", "Maildir", "TestSupport", "Archive"]
        ),
        .testTarget(
            name: "ArchiveTests",
            dependencies: ["Archive", "SyncEngine", "SyncState", "Digest", "TestSupport"]
        ),
        .testTarget(
            name: "ServiceTests",
            dependencies: [
                "Service", "SyncEngine", "MailStores", "Configuration", "SyncState", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SyncStateTests",
            dependencies: ["SyncState", .product(name: "GRDB", package: "GRDB.swift")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

