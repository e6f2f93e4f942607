import IMAPCodec
import NIOCore
import NIOSSL

extension IMAPConnection {
    /// Greeting → (STARTTLS → capabilities) → authentication → capabilities → ENABLE → ID → COMPRESS.
    /// Every security decision is taken by `SessionPolicy` before any credential is written.
    func setUpSession() async throws {
        let greeting = try await awaitGreeting()
        let host = configuration.host
        let preauthenticated = greeting.status == .preauth
        if case .capability(let caps)? = greeting.text.code { applyCapabilities(caps) } else { try await refreshCapabilities() }

        if !isTLSActive {
            if configuration.security == .startTLS && preauthenticated {
                // PREAUTH leaves no chance to STARTTLS (RFC 8314 §4.1 says: close).
                throw IMAPClientError.startTLSNotOffered(host: host)
            }
            if try SessionPolicy.tlsStep(security: configuration.security, tlsActive: isTLSActive,
                                         capabilities: capabilities, host: host) == .startTLS {
                _ = try await run(.startTLS, role: .startTLS)
                try await installTLS()
                // Anything learnt before TLS may have been forged: forget it and ask again.
                applyCapabilities([])
                try await refreshCapabilities()
            }
        }

        if let credentials = configuration.credentials, !preauthenticated {
            let plan = try SessionPolicy.authPlan(credentials: credentials, capabilities: capabilities,
                                                  encrypted: isTLSActive, allowInsecureAuth: configuration.allowInsecureAuth,
                                                  host: host)
            let outcome = try await authenticate(plan)
            let hasCapabilityCode: Bool
            if case .capability? = outcome.tagged.text.code { hasCapabilityCode = true } else { hasCapabilityCode = false }
            if !hasCapabilityCode, !outcome.untagged.contains(where: { if case .capability = $0 { true } else { false } }) {
                try await refreshCapabilities()
            }
        } else if !preauthenticated {
            // No credentials: the caller only wanted a (secured) connection, e.g. for probing.
            return
        }

        // ENABLE and ID in one flight: neither depends on the other.
        let toEnable = SessionPolicy.extensionsToEnable(capabilities)
        let enable = toEnable.isEmpty ? nil : try submit(.enable(toEnable), role: .enable)
        var identify: CommandID?
        if let clientID = configuration.clientID, capabilities.contains(.id) {
            identify = try submit(.id(clientID), role: .id)
        }
        if let enable {
            let outcome = try await completion(of: enable, throwOnNo: false)
            for case .enabled(let caps) in outcome.untagged { markEnabled(caps) }
        }
        if let identify {
            let outcome = try await completion(of: identify, throwOnNo: false)
            for case .id(let fields?) in outcome.untagged { serverID = fields }
        }
        if SessionPolicy.shouldCompress(configured: configuration.compress, capabilities: capabilities) {
            let outcome = try await run(.compress, role: .compress, throwOnNo: false)
            if outcome.tagged.status == .ok { try await installDeflate() }
        }
    }

    private func authenticate(_ plan: SessionPolicy.AuthPlan) async throws -> Outcome {
        let id: CommandID
        switch plan {
        case .login(let user, let password):
            id = try submit(.login(username: user, password: password), role: .login)
        case .authenticate(let mechanism, let initialResponse, inline: true):
            id = try submit(.authenticate(mechanism: mechanism, initialResponse: initialResponse), role: .authenticate)
        case .authenticate(let mechanism, let initialResponse, inline: false):
            // Without SASL-IR the response follows the server's empty `+` challenge.
            let response: EncodedCommand
            do { response = try encoder.encodeAuthenticationResponse(initialResponse) } catch {
                throw IMAPClientError.invalidArgument("\(error)")
            }
            id = try submit(.authenticate(mechanism: mechanism, initialResponse: nil), role: .authenticate,
                            extraChunks: [.waitForContinuation] + response.chunks)
        }
        do {
            return try await completion(of: id)
        } catch IMAPClientError.commandFailed(_, _, let text, _) {
            throw IMAPClientError.authenticationFailed(host: configuration.host, serverText: text)
        }
    }

    private func awaitGreeting() async throws -> UntaggedCondition {
        if let greeting { return try greeting.get() }
        if let terminationError { throw terminationError }
        return try await withCheckedThrowingContinuation { greetingWaiter = $0 }
    }

    func refreshCapabilities() async throws {
        let outcome = try await run(.capability, role: .capability)
        for case .capability(let caps) in outcome.untagged { applyCapabilities(caps) }
    }

    private func installTLS() async throws {
        let setup = tlsSetup
        let channel = channel
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(setup.makeHandler(), position: .first)
        }.get()
        isTLSActive = true
        await perform(state.resumeWrites())
    }

    private func installDeflate() async throws {
        let channel = channel
        try await channel.eventLoop.submit {
            let ops = channel.pipeline.syncOperations
            let handlers: [any ChannelHandler] = [try DeflateDecoder(), try DeflateEncoder()]
            // Deflate sits inside TLS: decrypt, then inflate; deflate, then encrypt.
            if let tls = try? ops.context(handlerType: NIOSSLClientHandler.self) {
                try ops.addHandlers(handlers, position: .after(tls.handler))
            } else {
                try ops.addHandlers(handlers, position: .first)
            }
        }.get()
        isCompressionActive = true
        await perform(state.resumeWrites())
    }
}
