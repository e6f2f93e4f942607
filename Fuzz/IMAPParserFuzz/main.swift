import IMAPCodec
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Fuzzes ResponseParser. Built with `-sanitize=fuzzer -DFUZZING` (see
// scripts/fuzz.sh), libFuzzer drives `LLVMFuzzerTestOneInput`: SwiftPM links
// this file's entry point instead of libFuzzer's `main`, so it hands control to
// `LLVMFuzzerRunDriver` explicitly. Built normally, this runs a
// bounded, seeded replay of mutated real-world responses:
//   IMAPParserFuzz [--iterations N] [--seed S]
// and `IMAPParserFuzz --benchmark MB` runs `ParserBenchmark` over MB megabytes.
// Either way a crash, trap or broken invariant is a failure.

/// Small limits so the fuzzer reaches every limit check quickly.
let fuzzLimits = ParserLimits(maxLineLength: 512, maxNonBodyLiteralSize: 256, maxNestingDepth: 8,
                              maxListLength: 32, maxBodyChunk: 64)

/// Feeds `data` in two parts split at a point derived from the data itself,
/// drains all events and checks the streaming invariants.
func fuzzOne(_ data: UnsafeRawBufferPointer) {
    guard !data.isEmpty else { return }
    let control = data[0]
    let payload = UnsafeRawBufferPointer(rebasing: data[1...])
    let split = payload.isEmpty ? 0 : Int(control) % (payload.count + 1)
    var parser = ResponseParser(limits: fuzzLimits, expectGreeting: control & 0x80 != 0)
    var inBody = false
    var bodyRemaining: UInt64 = 0
    for part in [UnsafeRawBufferPointer(rebasing: payload[..<split]), UnsafeRawBufferPointer(rebasing: payload[split...])] {
        var chunk = ByteBufferAllocator().buffer(capacity: part.count)
        chunk.writeBytes(part)
        parser.append(chunk)
        do {
            while let event = try parser.next() {
                switch event {
                case .fetch(.bodyBegin(_, let size)):
                    precondition(!inBody, "bodyBegin inside a body")
                    inBody = true
                    bodyRemaining = size
                case .fetch(.bodyBytes(let bytes)):
                    precondition(inBody, "bodyBytes outside a body")
                    precondition(bytes.readableBytes <= fuzzLimits.maxBodyChunk, "bodyBytes larger than maxBodyChunk")
                    precondition(UInt64(bytes.readableBytes) <= bodyRemaining, "more body bytes than announced")
                    bodyRemaining -= UInt64(bytes.readableBytes)
                case .fetch(.bodyEnd):
                    precondition(inBody && bodyRemaining == 0, "bodyEnd before the announced size")
                    inBody = false
                default:
                    break
                }
            }
        } catch {
            precondition(!error.rule.isEmpty && error.excerpt.utf8.count <= 80, "error without rule or with an oversized excerpt")
            precondition(error.excerpt.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "excerpt is not printable ASCII")
            return
        }
        precondition(parser.bufferedByteCount <= 4 * 1024 + data.count, "parser buffered more than its input")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// Real responses the mutator starts from.
let seeds: [String] = [
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n",
    "* 1 FETCH (UID 1 MODSEQ (3) FLAGS (\\Seen $Forwarded))\r\n",
    "* 2 FETCH (UID 7 RFC822.SIZE 12 BODY[] {12}\r\nHello world!)\r\n",
    "* 3 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {20}\r\nMessage-ID: <a@b>\r\n\r\n UID 9)\r\n",
    "* 4 FETCH (X-GM-LABELS (\"\\\\Inbox\" foo) ENVELOPE (\"d\" {3}\r\nsub NIL ((NIL NIL \"a\" \"b\")) NIL) UID 4)\r\n",
    "* 5 FETCH (BINARY[1] ~{4}\r\n\u{0}abc INTERNALDATE \"17-Jul-1996 02:44:25 -0700\")\r\n",
    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n",
    "* LIST () \"/\" {5}\r\nfo\"o) (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
    "* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1700000000 HIGHESTMODSEQ 7)\r\n",
    "* VANISHED (EARLIER) 1:3,5\r\n",
    "* ESEARCH (TAG \"a1\") UID MIN 1 MAX 9 ALL 1:3,5 COUNT 4 MODSEQ 9\r\n",
    "* SEARCH 1 2 3 (MODSEQ 42)\r\n",
    "* NAMESPACE ((\"\" \"/\")) NIL ((\"Shared/\" \"/\"))\r\n",
    "* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n",
    "a1 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
    "a2 NO [MODIFIED 7,9] Conditional STORE failed\r\n",
    "+ Ready\r\n",
    "* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n",
]

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Interesting bytes for the mutator: delimiters, digits, quotes, literal markers.
let dictionary: [[UInt8]] = ["(", ")", "{", "}", "~{", "\"", "\\", " ", "\r\n", "\n", "NIL", "99999999999", "{4294967296}",
                             "BODY[", "]", "<", ">", "*", "+", "FETCH", ":", ","].map { Array($0.utf8) }

func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
    var bytes = input
    for _ in 0..<Int.random(in: 1...4, using: &rng) {
        switch Int.random(in: 0..<6, using: &rng) {
        case 0 where !bytes.isEmpty: bytes.remove(at: Int.random(in: 0..<bytes.count, using: &rng))
        case 1: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...bytes.count, using: &rng))
        case 2 where !bytes.isEmpty: bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        case 3: bytes.insert(contentsOf: dictionary.randomElement(using: &rng)!, at: Int.random(in: 0...bytes.count, using: &rng))
        case 4 where bytes.count > 2:
            let a = Int.random(in: 0..<bytes.count, using: &rng)
            let b = Int.random(in: a..<bytes.count, using: &rng)
            bytes.insert(contentsOf: bytes[a...b], at: Int.random(in: 0...bytes.count, using: &rng))
        default: bytes += Array(seeds.randomElement(using: &rng)!.utf8)
        }
    }
    return bytes
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var fuzzArgc = CommandLine.argc
var fuzzArgv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzArgc, &fuzzArgv) { data, size in LLVMFuzzerTestOneInput(data, size) })
#endif

var iterations = 100_000
var seed: UInt64 = 1
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--iterations": iterations = arguments.next().flatMap { Int($0) } ?? iterations
    case "--seed": seed = arguments.next().flatMap { UInt64($0) } ?? seed
    case "--benchmark":
        let megabytes = arguments.next().flatMap { Int($0) } ?? 1000
        let result = ParserBenchmark.run(totalBytes: megabytes * 1_000_000)
        print("parsed \(megabytes) MB of FETCH responses in \(result.seconds) s: \(Int(result.megabytesPerSecond)) MB/s")
        exit(0)
    default:
        print("usage: IMAPParserFuzz [--iterations N] [--seed S] | --benchmark MB")
        exit(2)
    }
}

var rng = SplitMix64(state: seed)
for seedText in seeds {
    let bytes = [UInt8](repeating: 0, count: 1) + Array(seedText.utf8)
    bytes.withUnsafeBytes(fuzzOne)
}
for i in 0..<iterations {
    var input = [UInt8.random(in: 0...255, using: &rng)] + Array(seeds.randomElement(using: &rng)!.utf8)
    for _ in 0..<Int.random(in: 1...3, using: &rng) { input = mutate(input, &rng) }
    input.withUnsafeBytes(fuzzOne)
    if i > 0 && i % 50_000 == 0 { print("\(i) inputs") }
}
print("IMAPParserFuzz: \(iterations) mutated inputs (seed \(seed)) parsed without a crash")
