import NIOCore

/// Throughput of `ResponseParser` on a stream of FETCH responses, as a sync
/// run sees it: each response carries UID, FLAGS, RFC822.SIZE and a body
/// literal. The stream is produced from one reusable block of responses and
/// fed in fixed-size chunks that cut across responses, so memory stays flat
/// however many bytes are parsed.
public enum ParserBenchmark {
    /// - Returns: wall-clock seconds and throughput in MB/s (10^6 bytes).
    public static func run(totalBytes: Int, messageSize: Int = 64 * 1024,
                           chunkSize: Int = 64 * 1024) -> (seconds: Double, megabytesPerSecond: Double) {
        let block = makeBlock(messages: 16, messageSize: messageSize)
        let blockBodyBytes = 16 * messageSize
        var parser = ResponseParser(expectGreeting: false)
        var bodyBytes = 0
        var fed = 0
        var blocks = 0
        let clock = ContinuousClock()
        let start = clock.now
        while fed < totalBytes {
            var offset = 0
            while offset < block.readableBytes {
                let n = Swift.min(chunkSize, block.readableBytes - offset)
                parser.append(block.getSlice(at: block.readerIndex + offset, length: n)!)
                offset += n
                do {
                    while let event = try parser.next() {
                        if case .fetch(.bodyBytes(let bytes)) = event { bodyBytes &+= bytes.readableBytes }
                    }
                } catch {
                    preconditionFailure("benchmark stream failed to parse: \(error)")
                }
            }
            fed += block.readableBytes
            blocks += 1
        }
        let elapsed = clock.now - start
        precondition(bodyBytes == blocks * blockBodyBytes, "benchmark lost body bytes")
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return (seconds, Double(fed) / 1e6 / seconds)
    }

    static func makeBlock(messages: Int, messageSize: Int) -> ByteBuffer {
        var block = ByteBufferAllocator().buffer(capacity: messages * (messageSize + 128))
        var body = [UInt8](repeating: 0x61, count: messageSize)
        for i in stride(from: 76, to: messageSize, by: 78) { body[i - 1] = ASCII.cr; body[i] = ASCII.lf }
        for n in 1...messages {
            block.writeString("* \(n) FETCH (UID \(1000 + n) FLAGS (\\Seen $Forwarded) RFC822.SIZE \(messageSize) BODY[] {\(messageSize)}\r\n")
            block.writeBytes(body)
            block.writeString(")\r\n")
        }
        return block
    }
}
