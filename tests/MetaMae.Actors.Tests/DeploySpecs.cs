using System.CommandLine;
using MetaMae.Actors.Cluster;
using MetaMae.Actors.Runs;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace MetaMae.Actors.Tests;

/// <summary>
/// deploy/ cannot silently rot: every YAML parses, every command line in it parses with the program's own commands,
/// and the wiring (roles, ports, probe paths, discovery labels, environment names, image, secret keys, files listed)
/// matches what the program expects. Running them for real needs Docker or a cluster; this checks what can be checked here.
/// </summary>
public sealed class DeploySpecs
{
    private static readonly string Deploy = Path.Combine(TestRuns.RepoRoot, "deploy");

    private static List<Dictionary<object, object>> Documents(string file)
    {
        using var reader = new StringReader(File.ReadAllText(file));
        var parser = new MergingParser(new Parser(reader));
        var deserializer = new DeserializerBuilder().Build();
        var docs = new List<Dictionary<object, object>>();
        parser.Consume<YamlDotNet.Core.Events.StreamStart>();
        while (parser.Accept<YamlDotNet.Core.Events.DocumentStart>(out _))
            if (deserializer.Deserialize<Dictionary<object, object>?>(parser) is { } doc) docs.Add(doc);
        return docs;
    }

    private static object? At(object? node, params string[] path)
    {
        foreach (var key in path)
            node = node switch
            {
                Dictionary<object, object> map when map.TryGetValue(key, out var v) => v,
                List<object> list when int.TryParse(key, out var i) && i < list.Count => list[i],
                _ => null,
            };
        return node;
    }

    private static List<string> Strings(object? node) => ((List<object>?)node ?? []).Select(o => o.ToString()!).ToList();

    private static string? Arg(List<string> args, string name) => args.IndexOf(name) is var i and >= 0 && i + 1 < args.Count ? args[i + 1] : null;

    /// <summary>The program's own parser: no unknown option, no bad value.</summary>
    private static void Parses(IReadOnlyList<string> args, string where)
    {
        var result = MetaMae.Cli.Program.Commands().Parse(args.Select(a => a.Replace("$(POD_IP)", "10.0.0.7")).ToArray());
        Assert.True(result.Errors.Count == 0, $"{where}: `metamae {string.Join(' ', args)}`: {string.Join("; ", result.Errors.Select(e => e.Message))}");
    }

    [Fact]
    public void Every_yaml_file_in_deploy_parses()
    {
        var files = Directory.GetFiles(Deploy, "*.yaml", SearchOption.AllDirectories);
        Assert.True(files.Length >= 15, $"only {files.Length} YAML files under deploy/");
        foreach (var f in files) Assert.NotEmpty(Documents(f));
    }

    [Fact]
    public void The_compose_cluster_is_wired_as_the_program_expects()
    {
        var compose = Documents(Path.Combine(Deploy, "compose.yaml")).Single();
        var services = (Dictionary<object, object>)compose["services"];
        Assert.Equal(new[] { "coordinator", "data1", "data2", "evaluator", "learner1", "learner2", "postgres", "submit" },
            services.Keys.Select(k => k.ToString()!).Order());
        var coordinatorPort = Arg(Strings(At(services["coordinator"], "command")), "--port");
        var roles = new List<string>();
        foreach (var (name, service) in services.Where(s => s.Key.ToString() != "postgres").Select(s => (s.Key.ToString()!, s.Value)))
        {
            var command = Strings(At(service, "command"));
            Parses(command, $"compose service {name}");
            Assert.Equal(name, At(service, "hostname")?.ToString());
            Assert.Equal(name, Arg(command, "--hostname")); // what the node advertises must resolve to it
            var record = At(service, "environment", RunRecord.Variable)?.ToString();
            Assert.NotNull(record);
            var (_, recordName) = PostgresRunStore.Parse(record!);
            Assert.Equal("postgresql://postgres:5432/metamae", recordName);
            Assert.True(TimeSpan.Parse("00:00:" + At(service, "stop_grace_period")!.ToString()!.TrimEnd('s')).TotalSeconds > new Protocol.RunSpec { Dataset = null! }.StopGraceSeconds);
            if (command[0] == "node")
            {
                roles.AddRange(Arg(command, "--roles")!.Split(','));
                if (Arg(command, "--roles") is "learner" or "data") Assert.Equal("4055", Arg(command, "--data-port")); // a fixed data plane port
                var health = string.Join(' ', Strings(At(service, "healthcheck", "test")));
                Assert.Contains($"http://localhost:{Arg(command, "--ops-port")}{OpsEndpoint.ReadyPath}", health);
                // One seed list everywhere, the coordinator first (only it may start a cluster) and other nodes after it:
                // a restarted coordinator asks them first and rejoins their cluster instead of forming a second one.
                var seeds = Arg(command, "--seed-nodes")!.Split(',');
                Assert.Equal($"coordinator:{coordinatorPort}", seeds[0]);
                Assert.Contains(seeds, s => !s.StartsWith("coordinator:", StringComparison.Ordinal));
                Assert.All(seeds, s => Assert.Contains(s.Split(':')[0], services.Keys.Select(k => k.ToString())));
            }
            else
            {
                Assert.Equal($"coordinator:{coordinatorPort}", Arg(command, "--cluster"));
                Assert.True(File.Exists(Path.Combine(TestRuns.RepoRoot, Arg(command, "--config")!)));
                int replicas = int.Parse(command[command.IndexOf("replicas=2")].Split('=')[1]);
                Assert.Equal(replicas, services.Keys.Count(k => k.ToString()!.StartsWith("learner", StringComparison.Ordinal)));
            }
        }
        Assert.Equal(new[] { "coordinator", "data", "data", "evaluator", "learner", "learner" }, roles.Order());
        Assert.All(roles, r => Assert.Contains(r, Protocol.Roles.All));
        Assert.Equal("metamae", At(services["postgres"], "environment", "POSTGRES_DB"));
        var gpu = Documents(Path.Combine(Deploy, "compose.gpu.yaml")).Single();
        Assert.Equal("nvidia", At(gpu, "services", "learner1", "deploy", "resources", "reservations", "devices", "0", "driver"));
        Assert.Equal("cuda", At(gpu, "services", "learner1", "build", "args", "TORCH_BACKEND"));
        Assert.Contains("ARG TORCH_BACKEND", File.ReadAllText(Path.Combine(Deploy, "Dockerfile")));
    }

    [Fact]
    public void The_kubernetes_manifests_are_wired_as_the_program_expects()
    {
        var baseDir = Path.Combine(Deploy, "k8s", "base");
        var kustomization = Documents(Path.Combine(baseDir, "kustomization.yaml")).Single();
        Assert.Equal(Directory.GetFiles(baseDir, "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml").Order(),
            Strings(kustomization["resources"]).Order()); // every manifest listed, none missing
        var docs = Directory.GetFiles(baseDir, "*.yaml").SelectMany(Documents).ToList();
        Dictionary<object, object> Of(string kind, string name) =>
            docs.Single(d => d["kind"].ToString() == kind && At(d, "metadata", "name")?.ToString() == name);

        var service = Of("Service", "metamae");
        Assert.Equal("None", At(service, "spec", "clusterIP"));
        var servicePorts = ((List<object>)At(service, "spec", "ports")!).ToDictionary(p => At(p, "name")!.ToString()!, p => At(p, "port")!.ToString()!);
        var role = Of("Role", "pod-reader");
        Assert.Contains("pods", Strings(At(role, "rules", "0", "resources")));
        Assert.Contains("list", Strings(At(role, "rules", "0", "verbs")));
        Assert.Equal("metamae", At(Of("RoleBinding", "metamae-reads-pods"), "subjects", "0", "name"));
        // The record's secret is generated from record.env, which the script writes with a random password (none ships).
        var generator = ((List<object>)kustomization["secretGenerator"]).Single();
        Assert.Equal("metamae-record", At(generator, "name"));
        Assert.Equal(["record.env"], Strings(At(generator, "envs")));
        Assert.DoesNotContain(docs, d => d["kind"].ToString() == "Secret");
        var secretKeys = RecordSecret();

        var workloads = docs.Where(d => d["kind"].ToString() is "Deployment" or "StatefulSet" && At(d, "metadata", "labels", "app")?.ToString() == "metamae").ToList();
        Assert.Equal(new[] { "coordinator", "data", "evaluator", "learner" }, workloads.Select(w => At(w, "metadata", "name")!.ToString()!).Order());
        foreach (var w in workloads)
        {
            var name = At(w, "metadata", "name")!.ToString()!;
            var pod = At(w, "spec", "template")!;
            var container = At(pod, "spec", "containers", "0")!;
            var args = Strings(At(container, "args"));
            Parses(args, $"k8s {name}");
            Assert.Equal(name, Arg(args, "--roles"));
            Assert.Equal("kubernetes", Arg(args, "--discovery"));
            Assert.Equal(At(pod, "metadata", "labels", "app"), Arg(args, "--service-name")); // the pod label discovery selects on
            Assert.Equal("$(POD_IP)", Arg(args, "--hostname"));
            Assert.Equal("metamae", At(pod, "spec", "serviceAccountName"));
            Assert.Equal("metamae", At(container, "image"));
            Assert.Equal("IfNotPresent", At(container, "imagePullPolicy")); // an image loaded into kind/minikube is used, not pulled
            Assert.NotNull(At(container, "resources", "requests", "cpu")); // scheduled where it fits, and bounded
            Assert.NotNull(At(container, "resources", "requests", "memory"));
            Assert.NotNull(At(container, "resources", "limits", "memory"));
            var ports = ((List<object>)At(container, "ports")!).ToDictionary(p => At(p, "name")!.ToString()!, p => At(p, "containerPort")!.ToString()!);
            Assert.Equal(Arg(args, "--port"), ports["remoting"]);
            Assert.Equal(Arg(args, "--ops-port"), ports["ops"]);
            Assert.Equal(new NodeOptions().ManagementPort.ToString(), ports["management"]); // bootstrap's contact point
            // The data plane: gradients between learner replicas, batches from data nodes to learners on other nodes.
            if (name is "learner" or "data") Assert.Equal(Arg(args, "--data-port"), ports["data-plane"]);
            foreach (var (port, value) in ports) Assert.Equal(value, servicePorts[port]);
            Assert.Equal(OpsEndpoint.ReadyPath, At(container, "readinessProbe", "httpGet", "path"));
            Assert.Equal(OpsEndpoint.AlivePath, At(container, "livenessProbe", "httpGet", "path"));
            Assert.Equal("ops", At(container, "readinessProbe", "httpGet", "port"));
            var env = ((List<object>)At(container, "env")!).ToDictionary(e => At(e, "name")!.ToString()!, e => e);
            Assert.Equal("status.podIP", At(env["POD_IP"], "valueFrom", "fieldRef", "fieldPath"));
            var secretKey = At(env[RunRecord.Variable], "valueFrom", "secretKeyRef")!;
            Assert.Equal("metamae-record", At(secretKey, "name"));
            Assert.Contains(At(secretKey, "key")!.ToString()!, secretKeys.Keys);
            // Not root, no escalation, no capabilities.
            Assert.Equal("true", At(pod, "spec", "securityContext", "runAsNonRoot")?.ToString());
            Assert.NotEqual("0", At(pod, "spec", "securityContext", "runAsUser")?.ToString());
            Assert.Equal("false", At(container, "securityContext", "allowPrivilegeEscalation")?.ToString());
            Assert.Equal(["ALL"], Strings(At(container, "securityContext", "capabilities", "drop")));
            Assert.True(int.Parse(At(pod, "spec", "terminationGracePeriodSeconds")!.ToString()!) > new Protocol.RunSpec { Dataset = null! }.StopGraceSeconds + 10);
        }
        Assert.Equal("true", At(Of("StatefulSet", "postgres"), "spec", "template", "spec", "securityContext", "runAsNonRoot")?.ToString());
        Assert.Equal("password", At(Of("StatefulSet", "postgres"), "spec", "template", "spec", "containers", "0", "env", "2", "valueFrom", "secretKeyRef", "key"));
        Assert.Contains("password", secretKeys.Keys);
        var coordinator = Of("StatefulSet", "coordinator");
        Assert.Equal("metamae", At(coordinator, "spec", "serviceName"));
        var jobSpec = Of("Job", "fashion-mnist");
        Assert.Equal("true", At(jobSpec, "spec", "template", "spec", "securityContext", "runAsNonRoot")?.ToString());
        var submit = At(jobSpec, "spec", "template", "spec", "containers", "0")!;
        Assert.Equal("IfNotPresent", At(submit, "imagePullPolicy"));
        var submitEnv = ((List<object>)At(submit, "env")!).ToDictionary(e => At(e, "name")!.ToString()!, e => e);
        Assert.Equal("metamae-record", At(submitEnv[RunRecord.Variable], "valueFrom", "secretKeyRef", "name")); // an abort it records lands in the cluster's record
        Assert.NotNull(At(jobSpec, "spec", "ttlSecondsAfterFinished"));
        Assert.NotNull(At(jobSpec, "spec", "activeDeadlineSeconds"));
        Assert.Matches(@"^postgres:\d+\.\d+$", At(Of("StatefulSet", "postgres"), "spec", "template", "spec", "containers", "0", "image")!.ToString()!);
        Assert.NotNull(At(submit, "resources", "limits", "memory"));
        Assert.NotNull(At(Of("StatefulSet", "postgres"), "spec", "template", "spec", "containers", "0", "resources", "limits", "memory"));
        // The unauthenticated remoting and management ports take connections from the project's pods only; ops stays open.
        var policy = Of("NetworkPolicy", "metamae-nodes");
        Assert.Equal("metamae", At(policy, "spec", "podSelector", "matchLabels", "app"));
        var rules = (List<object>)At(policy, "spec", "ingress")!;
        var guarded = rules.Single(r => At(r, "from") is not null);
        Assert.Equal(new[] { servicePorts["remoting"], servicePorts["management"], servicePorts["data-plane"] }.Order(),
            ((List<object>)At(guarded, "ports")!).Select(p => At(p, "port")!.ToString()!).Order());
        // The data plane's range covers the 16 ports a learner node tries.
        var plane = ((List<object>)At(guarded, "ports")!).Single(p => At(p, "port")!.ToString() == servicePorts["data-plane"]);
        Assert.Equal(int.Parse(servicePorts["data-plane"]) + 15, int.Parse(At(plane, "endPort")!.ToString()!));
        var open = rules.Single(r => At(r, "from") is null);
        Assert.Equal([servicePorts["ops"]], ((List<object>)At(open, "ports")!).Select(p => At(p, "port")!.ToString()!));
        Assert.Equal("client", At(jobSpec, "spec", "template", "metadata", "labels", "role")); // the submit Job may reach the nodes
        Assert.Equal("5432", At(Of("NetworkPolicy", "postgres"), "spec", "ingress", "0", "ports", "0", "port")!.ToString());
        var job = Strings(At(submit, "args"));
        Parses(job, "k8s job");
        Assert.Equal($"coordinator-0.metamae:{servicePorts["remoting"]}", Arg(job, "--cluster")); // the StatefulSet's first pod
        Assert.Equal(["coordinator", "learner"], docs.Where(d => d["kind"].ToString() == "PodDisruptionBudget").Select(d => At(d, "metadata", "name")!.ToString()!).Order());

        var gpu = File.ReadAllText(Path.Combine(Deploy, "k8s", "overlays", "gpu", "kustomization.yaml"));
        Assert.Contains("nvidia.com/gpu: 1", gpu);
        Assert.Contains("memory:", gpu); // the GPU learner keeps cpu and memory requests and a memory limit
        Assert.Contains("../../base", Strings(Documents(Path.Combine(Deploy, "k8s", "overlays", "cpu", "kustomization.yaml")).Single()["resources"]));
        var exposed = File.ReadLines(Path.Combine(Deploy, "Dockerfile")).Single(l => l.StartsWith("EXPOSE", StringComparison.Ordinal));
        foreach (var p in servicePorts.Values) Assert.Contains(p, exposed);
    }

    /// <summary>What deploy/k8s/make-record-secret.sh writes (into a temporary file): the secret's keys and values.</summary>
    private static Dictionary<string, string> RecordSecret()
    {
        var file = Path.Combine(Directory.CreateTempSubdirectory("metamae-secret-").FullName, "record.env");
        try
        {
            var script = Path.Combine(Deploy, "k8s", "make-record-secret.sh");
            var (code, _, err) = Shell(script, file);
            Assert.True(code == 0, err);
            return File.ReadAllLines(file).Select(l => l.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1]);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(file)!, recursive: true);
        }
    }

    private static (int Code, string Out, string Err) Shell(string script, string argument)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(argument);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }

    [Fact]
    public void The_record_secret_script_makes_a_random_password_once_and_never_rotates_it()
    {
        var dir = Directory.CreateTempSubdirectory("metamae-secret-").FullName;
        try
        {
            var script = Path.Combine(Deploy, "k8s", "make-record-secret.sh");
            string Read(string f) => File.ReadAllText(f);
            var first = Path.Combine(dir, "a.env");
            Assert.Equal(0, Shell(script, first).Code);
            var secret = File.ReadAllLines(first).Select(l => l.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1]);
            Assert.True(secret["password"].Length >= 24, secret["password"]);
            Assert.Equal($"postgresql://metamae:{secret["password"]}@postgres:5432/metamae", secret["url"]);
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(first));
            var text = Read(first);
            var again = Shell(script, first); // a second run keeps the file: the database keeps its first password
            Assert.Equal(0, again.Code);
            Assert.Contains("kept", again.Err);
            Assert.Equal(text, Read(first));
            var other = Path.Combine(dir, "b.env");
            Shell(script, other);
            Assert.NotEqual(text, Read(other)); // random, not a default
            Assert.DoesNotContain("change-me", string.Concat(Directory.GetFiles(Path.Combine(Deploy, "k8s"), "*.yaml", SearchOption.AllDirectories).Select(File.ReadAllText)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
