// The system's libcrypto (Debian libssl-dev), used only for SHA-256. NIOSSL
// carries its own symbol-prefixed BoringSSL, so the two never clash, and we
// avoid compiling a second BoringSSL copy through swift-crypto.
#include <openssl/sha.h>
