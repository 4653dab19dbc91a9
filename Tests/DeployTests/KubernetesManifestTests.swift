import Foundation
import Testing
import TestSupport
import Yams

/// deploy/kubernetes/nftpool.yaml, the kubeadm static pod: valid against Kubernetes' own schemas offline
/// (PyPI's kubernetes-validate, strict: no unknown field), and holding what the issue asks of it.
@Suite struct KubernetesManifestTests {
    static let manifest = Repo.root.appendingPathComponent("deploy/kubernetes/nftpool.yaml")

    static func validate(_ path: String) throws -> (status: Int32, said: String) {
        let r = try Repo.run(URL(fileURLWithPath: "/usr/bin/env"), ["kubernetes-validate", "--strict", path])
        return (r.status, r.out + r.err)
    }

    @Test func validatesStrictlyOffline() throws {
        let r = try Self.validate(Self.manifest.path)
        #expect(r.status == 0 && r.said.contains("passed for resource pod/nftpool"), "\(r.said)")

        // The check can fail: a misspelt field is refused.
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-pod-\(getpid()).yaml")
        defer { try? FileManager.default.removeItem(at: bad) }
        try String(contentsOf: Self.manifest, encoding: .utf8).replacingOccurrences(of: "readOnlyRootFilesystem", with: "readOnlyRootFileSystem")
            .write(to: bad, atomically: true, encoding: .utf8)
        let refused = try Self.validate(bad.path)
        #expect(refused.status != 0 && refused.said.contains("readOnlyRootFileSystem"), "\(refused.said)")
    }

    @Test func holdsWhatAControlPlaneNodeNeeds() throws {
        let pod = try #require(try Yams.load(yaml: String(contentsOf: Self.manifest, encoding: .utf8)) as? [String: Any])
        let spec = try #require(pod["spec"] as? [String: Any])
        #expect(spec["hostNetwork"] as? Bool == true)
        let container = try #require((spec["containers"] as? [[String: Any]])?.first)
        let command = try #require(container["command"] as? [String])
        #expect(command.prefix(2) == ["/usr/local/bin/nftpool", "run"])
        let address = try #require(command.firstIndex(of: "--metrics-address").map { command[$0 + 1] })
        let port = try #require(address.split(separator: ":").last.flatMap { Int($0) })
        let security = try #require(container["securityContext"] as? [String: Any])
        #expect(security["readOnlyRootFilesystem"] as? Bool == true)
        #expect(security["allowPrivilegeEscalation"] as? Bool == false)
        let caps = try #require(security["capabilities"] as? [String: [String]])
        #expect(caps == ["drop": ["ALL"], "add": ["NET_ADMIN"]])
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = try #require((container[probe] as? [String: Any])?["httpGet"] as? [String: Any], "\(probe)")
            #expect(get["path"] as? String == path && get["port"] as? Int == port && get["host"] as? String == "127.0.0.1", "\(probe): \(get)")
        }
        // The spec comes from a hostPath mounted where the command reads it.
        let mounts = try #require(container["volumeMounts"] as? [[String: Any]])
        let volumes = try #require(spec["volumes"] as? [[String: Any]])
        let specFile = try #require(command.last)
        let mount = try #require(mounts.first { specFile.hasPrefix(($0["mountPath"] as? String ?? "?") + "/") })
        let volume = try #require(volumes.first { $0["name"] as? String == mount["name"] as? String })
        #expect((volume["hostPath"] as? [String: Any])?["path"] as? String == "/etc/nftpool")
        #expect(mounts.contains { $0["mountPath"] as? String == "/run/nftpool" && $0["readOnly"] == nil }, "the lock and status")
    }
}
