import Foundation
import Testing
import TestSupport

/// The contract other people's scripts rely on: exit codes, one error line per problem on stderr, `-`.
@Suite struct CLITests {
    let good = Repo.rulesets.appendingPathComponent("kube-apiserver.yaml").path

    /// kube-apiserver.yaml names /etc/kubernetes/pki/ca.crt; validate reads it, so the test points the
    /// example at a CA it makes.
    @Test func validateValidSpec() throws {
        let ca = try ThrowawayCA("validate")
        let spec = ca.dir.appendingPathComponent("kube-apiserver.yaml").path
        let yaml = try String(contentsOfFile: good, encoding: .utf8)
            .replacingOccurrences(of: "/etc/kubernetes/pki/ca.crt", with: ca.certificate.path)
        try yaml.write(toFile: spec, atomically: true, encoding: .utf8)
        let r = try Repo.run(Repo.nftpool, ["validate", spec])
        #expect(r.status == 0)
        #expect(r.out == "\(spec): valid: table inet nftpool, 1 pool, 1 frontend, 3 backends\n")
        #expect(r.err.isEmpty)
    }

    /// A caFile that cannot be read fails validate (exit 2) with its path, instead of every https probe
    /// at run time; render, which never reads it, still works.
    @Test func validateReadsTheCAFileAndRenderDoesNot() throws {
        let yaml = try String(contentsOfFile: good, encoding: .utf8)
            .replacingOccurrences(of: "/etc/kubernetes/pki/ca.crt", with: "/nonexistent/ca.crt")
        let r = try Repo.run(Repo.nftpool, ["validate", "-"], stdin: yaml)
        #expect(r.status == 2 && r.out.isEmpty)
        #expect(r.err == "pools[0].healthCheck.caFile: cannot read /nonexistent/ca.crt: No such file or directory\n")
        let render = try Repo.run(Repo.nftpool, ["render", "-"], stdin: yaml)
        #expect(render.status == 0 && render.err.isEmpty)
    }

    @Test func validateInvalidSpecExits2WithOneLinePerError() throws {
        let bad = """
            pools:
              - name: api
                frontends: [{address: 10.0.0.300, port: 6443}]
                backends: [{address: 10.0.1.1, weight: 0}]
            """
        let r = try Repo.run(Repo.nftpool, ["validate", "-"], stdin: bad)
        #expect(r.status == 2)
        #expect(r.out.isEmpty)
        #expect(r.err == """
            pools[0].frontends[0].address: "10.0.0.300" is not an IPv4 or IPv6 address
            pools[0].backends[0].weight: 0 is out of range (1-1000)

            """)
    }

    @Test func renderReadsStdinAndRefusesInvalidSpecs() throws {
        let yaml = try String(contentsOfFile: good, encoding: .utf8)
        let fromStdin = try Repo.run(Repo.nftpool, ["render", "-"], stdin: yaml)
        let fromFile = try Repo.run(Repo.nftpool, ["render", good])
        #expect(fromStdin.status == 0 && fromStdin.out == fromFile.out && !fromFile.out.isEmpty)
        let bad = try Repo.run(Repo.nftpool, ["render", "-"], stdin: "pools: 3\n")
        #expect(bad.status == 2 && bad.out.isEmpty)
        #expect(bad.err == "pools: must be a list, not \"3\"\n")
    }

    @Test func unreadableFileExits2() throws {
        let r = try Repo.run(Repo.nftpool, ["validate", "/nonexistent/spec.yaml"])
        #expect(r.status == 2)
        #expect(r.err == "spec: cannot read /nonexistent/spec.yaml: No such file or directory\n")
    }

    /// A directory used to print an NSCocoaErrorDomain error; every unusable FILE is one line, exit 2.
    @Test func directoriesEmptyFilesAndEmptyStdinExit2() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-cli-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = dir.appendingPathComponent("empty.yaml")
        try Data().write(to: empty)
        let notText = dir.appendingPathComponent("latin1.yaml")
        try Data([0x74, 0x61, 0x62, 0x6C, 0x65, 0x3A, 0x20, 0xE9, 0x0A]).write(to: notText)
        for (arguments, stdin, err) in [
            (["validate", dir.path], nil, "spec: cannot read \(dir.path): Is a directory\n"),
            (["render", dir.path], nil, "spec: cannot read \(dir.path): Is a directory\n"),
            (["validate", empty.path], nil, "spec: the document is empty\n"),
            (["validate", "-"], "", "spec: the document is empty\n"),
            (["validate", notText.path], nil, "spec: \(notText.path) is not UTF-8 text\n"),
        ] as [([String], String?, String)] {
            let r = try Repo.run(Repo.nftpool, arguments, stdin: stdin)
            #expect(r.status == 2 && r.out.isEmpty, "\(arguments)")
            #expect(r.err == err, "\(arguments)")
        }
    }

    /// chmod 000 stops everyone but root; the test runs as root, so it reads the file as another user.
    @Test func aFileWithoutReadPermissionExits2() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-perm-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let spec = dir.appendingPathComponent("spec.yaml")
        try FileManager.default.copyItem(atPath: Repo.rulesets.appendingPathComponent("weighted.yaml").path, toPath: spec.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: spec.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let arguments = ["validate", spec.path]
        let r = getuid() == 0
            ? try Repo.run(URL(fileURLWithPath: "/usr/bin/setpriv"), ["--reuid=65534", "--regid=65534", "--clear-groups", Repo.nftpool.path] + arguments)
            : try Repo.run(Repo.nftpool, arguments)
        #expect(r.status == 2 && r.out.isEmpty)
        #expect(r.err == "spec: cannot read \(spec.path): Permission denied\n")
    }

    /// "Errors printed to users never carry build paths or raw error-domain dumps."
    static func expectPlainLine(_ err: String, _ context: String) {
        #expect(err.hasSuffix("\n") && err.dropLast().allSatisfy { $0 != "\n" }, "one line, \(context): \(err)")
        for raw in ["Error Domain", "NSCocoaErrorDomain", "NSPOSIXErrorDomain", "UserInfo", Repo.root.path] {
            #expect(!err.contains(raw), "\(context): \(err)")
        }
    }

    /// Every command that takes FILE: a missing one, a directory and (as another user) one without read
    /// permission are one line naming it, exit 2, and nothing on standard output.
    @Test func everyCommandSaysWhyItCannotReadTheSpec() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-noread-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let locked = dir.appendingPathComponent("spec.yaml")
        try FileManager.default.copyItem(atPath: Repo.rulesets.appendingPathComponent("weighted.yaml").path, toPath: locked.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: locked.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let commands: [[String]] = [
            ["validate"], ["render"], ["diff"], ["apply"], ["delete"], ["run", "--metrics-address", "off"], ["status"],
            ["ha-config", "--node", "lb-a", "--dir", dir.appendingPathComponent("out").path],
        ]
        for command in commands {
            for (file, reason) in [("/nonexistent/spec.yaml", "No such file or directory"), (dir.path, "Is a directory")] {
                let r = try Repo.run(Repo.nftpool, command + [file])
                #expect(r.status == 2 && r.out.isEmpty, "\(command) \(file): \(r)")
                #expect(r.err == "spec: cannot read \(file): \(reason)\n", "\(command) \(file)")
                Self.expectPlainLine(r.err, "\(command) \(file)")
            }
            // chmod 000 stops everyone but root: read as another user.
            let r = getuid() == 0
                ? try Repo.run(URL(fileURLWithPath: "/usr/bin/setpriv"), ["--reuid=65534", "--regid=65534", "--clear-groups", Repo.nftpool.path] + command + [locked.path])
                : try Repo.run(Repo.nftpool, command + [locked.path])
            #expect(r.status == 2 && r.out.isEmpty, "\(command): \(r)")
            #expect(r.err == "spec: cannot read \(locked.path): Permission denied\n", "\(command)")
        }
    }

    /// `run`'s last-resort error line: a Foundation error (the HA runtime directory cannot be made, its
    /// parent is a file) used to print as `Error Domain=NSCocoaErrorDomain Code=512 … UserInfo={…}`. In a
    /// scratch network namespace: the daemon stops before any netlink, but takes its table's lock.
    @Test func runSaysWhatFailedOnWhichFileInOneLine() throws {
        guard getuid() == 0 else { return }  // a network namespace needs root
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-runerr-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let file = root.appendingPathComponent("file").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let ns = try ScratchNamespace("runerr")
        let r = try ns.exec(Repo.nftpool.path, [
            "run", Repo.rulesets.appendingPathComponent("ha-pair.yaml").path, "--node", "lb-a", "--runtime-dir", "\(file)/sub",
            "--metrics-address", "off", "--status-file", root.appendingPathComponent("status.json").path,
        ])
        #expect(r.status == 1 && r.out.isEmpty, "\(r)")
        #expect(r.err == "nftpool run: cannot write \(file)/sub: Not a directory\n")
        Self.expectPlainLine(r.err, "run")
    }

    @Test func helpListsEveryCommand() throws {
        let r = try Repo.run(Repo.nftpool, ["--help"])
        #expect(r.status == 0)
        for command in ["validate", "render", "diff", "apply", "delete", "run", "status", "ha-config"] {
            #expect(r.out.contains("  \(command) "), "\(command) in --help")
        }
    }

    @Test func statusWithoutADaemonSaysSoAndExits1() throws {
        let r = try Repo.run(Repo.nftpool, ["status", "--status-file", "/nonexistent/x.json", Repo.rulesets.appendingPathComponent("weighted.yaml").path])
        #expect(r.status == 1)
        #expect(r.err == "no status at /nonexistent/x.json: is `nftpool run` running?\n")
    }

    /// ha-config: the three files, their modes, the lines that run them; the contract's error lines.
    @Test func haConfigWritesTheFilesAndRefusesWhatItCannot() throws {
        let ha = Repo.rulesets.appendingPathComponent("ha-pair.yaml").path
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("nftpool-hacfg-\(getpid())-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("etc/lb-a").path
        let r = try Repo.run(Repo.nftpool, ["ha-config", ha, "--node", "lb-a", "--dir", dir, "--runtime-dir", "/run/nftpool-test"])
        #expect(r.status == 0 && r.err.isEmpty, "\(r.err)")
        #expect(r.out.contains("run: keepalived -n -l -D -f \(dir)/keepalived.conf -p /run/nftpool-test/keepalived.nftpool.lb-a.pid -r /run/nftpool-test/keepalived-vrrp.nftpool.lb-a.pid -c /run/nftpool-test/keepalived-checker.nftpool.lb-a.pid\n"))
        #expect(r.out.contains("run: conntrackd -C \(dir)/conntrackd.conf\n"))
        for (name, mode) in [("keepalived.conf", 0o644), ("conntrackd.conf", 0o644), ("nftpool-notify.sh", 0o755)] {
            let attributes = try FileManager.default.attributesOfItem(atPath: "\(dir)/\(name)")
            #expect((attributes[.posixPermissions] as? Int) == mode, "\(name)")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp.") }
        #expect(leftovers.isEmpty)
        let keepalived = try String(contentsOfFile: "\(dir)/keepalived.conf", encoding: .utf8)
        #expect(keepalived.contains("notify_fifo /run/nftpool-test/nftpool.lb-a.notify\n"))
        #expect(keepalived.contains("notify \"\(dir)/nftpool-notify.sh\"\n"))

        let validate = try Repo.run(Repo.nftpool, ["validate", ha])
        #expect(validate.out == "\(ha): valid: table inet nftpool, 2 pools, 2 frontends, 5 backends; ha: 2 nodes (lb-a, lb-b)\n")

        let unknown = try Repo.run(Repo.nftpool, ["ha-config", ha, "--node", "x", "--dir", dir])
        #expect(unknown.status == 2 && unknown.out.isEmpty)
        #expect(unknown.err == "--node: no node \"x\" in ha.nodes (lb-a, lb-b)\n")

        let single = try Repo.run(Repo.nftpool, ["ha-config", good, "--node", "lb-a", "--dir", dir])
        #expect(single.status == 2 && single.out.isEmpty)
        #expect(single.err == "ha: this spec has no ha section\n")

        // A directory that cannot be made (its parent is a file): exit 1 naming it.
        let file = root.appendingPathComponent("file").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let blocked = try Repo.run(Repo.nftpool, ["ha-config", ha, "--node", "lb-a", "--dir", "\(file)/sub"])
        #expect(blocked.status == 1 && blocked.out.isEmpty)
        #expect(blocked.err == "cannot write to \(file)/sub: Not a directory\n")

        // A directory this user may not write: exit 1 naming the file, nothing left behind.
        if getuid() == 0 {
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root.path)
            let denied = try Repo.run(URL(fileURLWithPath: "/usr/bin/setpriv"), [
                "--reuid=65534", "--regid=65534", "--clear-groups", Repo.nftpool.path, "ha-config", ha, "--node", "lb-a", "--dir", dir,
            ])
            #expect(denied.status == 1 && denied.out.isEmpty)
            #expect(denied.err == "cannot write \(dir)/keepalived.conf: Permission denied\n")
        }
    }
}
