//! Certificates made at test time with rcgen: a CA, a server certificate for 127.0.0.1 and
//! localhost, client certificates for users — and the rustls server configuration that checks
//! them. Keys are ECDSA P-256 in PKCS#8, which kube's rustls reads from a kubeconfig.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority: what a kubeconfig's `certificate-authority-data` holds.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    der: CertificateDer<'static>,
}

/// A certificate and its key, as PEM for a kubeconfig and as DER for rustls.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Authority {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    /// The API server's certificate: valid for the addresses the tests dial.
    pub fn server(&self) -> Identity {
        self.issue(
            vec!["127.0.0.1".into(), "localhost".into()],
            "kube-apiserver",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A user's client certificate; Kubernetes reads the user name from the CN.
    pub fn client(&self, user: &str) -> Identity {
        self.issue(Vec::new(), user, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        names: Vec<String>,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> Identity {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages.push(KeyUsagePurpose::DigitalSignature);
        params.extended_key_usages.push(usage);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// HTTPS with `server`'s certificate; with `client_ca`, only clients presenting a certificate
/// that CA signed complete the handshake.
pub fn server_config(
    server: &Identity,
    client_ca: Option<&Authority>,
) -> Arc<rustls::ServerConfig> {
    // ring, as kube's client: the process has no other provider to default to.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));
    Arc::new(builder.with_single_cert(vec![server.cert_der.clone()], key).unwrap())
}
