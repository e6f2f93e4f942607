import CompressNIO
import Digest
import NIOCore
import NIOSSL
import Synchronization

/// RFC 4978 COMPRESS=DEFLATE, inbound half: raw deflate (no zlib header; compress-nio's
/// `.deflate` uses negative windowBits, i.e. raw), one stream for the whole connection.
final class DeflateDecoder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let inflater: ZlibDecompressor
    private let chunkSize = 64 * 1024

    init() throws { inflater = try ZlibDecompressor(algorithm: .deflate) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        // Inflate into bounded chunks so a highly compressible burst cannot allocate
        // unboundedly; each chunk is passed on (and backpressured) separately.
        while true {
            var output = context.channel.allocator.buffer(capacity: chunkSize)
            var outputFull = false
            do {
                try inflater.inflate(from: &input, to: &output)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                outputFull = true
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                // All input consumed, the stream needs more bytes: wait for the next read.
            } catch {
                context.fireErrorCaught(error)
                return
            }
            if output.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(output)) }
            if !outputFull { break }
        }
    }
}

/// RFC 4978 outbound half: every write is deflated with Z_SYNC_FLUSH so the server
/// can decode each command as soon as it arrives (a command must never sit in
/// the compressor's buffer waiting for more input).
final class DeflateEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let deflater: ZlibCompressor

    init() throws { deflater = try ZlibCompressor(algorithm: .deflate) }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var input = unwrapOutboundIn(data)
        var output = context.channel.allocator.buffer(capacity: deflater.maxSize(from: input))
        do {
            try deflater.deflate(from: &input, to: &output, flush: .sync)
            context.write(wrapOutboundOut(output), promise: promise)
        } catch {
            promise?.fail(error)
            context.fireErrorCaught(error)
        }
    }
}

/// Builds the TLS handler for a connection and remembers why a handshake failed,
/// so a pin mismatch can be reported with both fingerprints instead of a bare
/// "handshake failed".
final class TLSSetup: Sendable {
    let configuration: IMAPConfiguration.TLS
    let host: String
    /// Written once by the verification callback on the event loop, read by the
    /// connection after the handshake failed; a Mutex because those are different threads.
    let observedMismatch = Mutex<String?>(nil)

    init(configuration: IMAPConfiguration.TLS, host: String) {
        self.configuration = configuration
        self.host = host
    }

    func makeHandler() throws -> NIOSSLClientHandler {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let caFile = configuration.caFile {
            tls.trustRoots = .default
            tls.additionalTrustRoots = [.file(caFile)]
        }
        let serverName = configuration.serverName ?? host
        // SNI must not be an IP literal (RFC 6066 §3).
        let sni: String? = serverName.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" } ? nil : serverName
        if let pin = configuration.normalizedPin {
            // The pin replaces chain and host name checks (self-signed servers), but the
            // callback only runs when verification is not `.none`.
            tls.certificateVerification = .noHostnameVerification
            let context = try NIOSSLContext(configuration: tls)
            let box = self
            return try NIOSSLClientHandler(context: context, serverHostname: sni) { certificates, promise in
                guard let leaf = certificates.first, let der = try? leaf.toDERBytes() else {
                    promise.succeed(.failed)
                    return
                }
                let actual = SHA256Hasher.digest(der).hexString
                if actual == pin {
                    promise.succeed(.certificateVerified)
                } else {
                    box.observedMismatch.withLock { $0 = actual }
                    promise.succeed(.failed)
                }
            }
        }
        // With an IP literal and no SNI, NIOSSL checks the certificate's IP SANs
        // against the peer address, so full verification still applies.
        return try NIOSSLClientHandler(context: NIOSSLContext(configuration: tls), serverHostname: sni)
    }

    /// Maps a TLS failure to the client error that tells the user what to fix.
    func classify(_ error: any Error) -> IMAPClientError {
        if let actual = observedMismatch.withLock({ $0 }) {
            return .fingerprintMismatch(host: host, expected: configuration.normalizedPin ?? "", actual: actual)
        }
        let text = String(describing: error)
        if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed")
            || text.contains("unable to get local issuer") || text.contains("self signed") || text.contains("self-signed") {
            return .certificateUntrusted(host: host, reason: text)
        }
        return .tlsFailed(host: host, reason: text)
    }
}
