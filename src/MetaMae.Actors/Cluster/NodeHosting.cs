using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Akka.Management;
using Akka.Management.Cluster.Bootstrap;
using Akka.Discovery.KubernetesApi;
using MetaMae.Actors.Coordination;
using MetaMae.Protocol;

namespace MetaMae.Actors.Cluster;

/// <summary>What a node is: its roles, where it listens and which nodes it joins.</summary>
public sealed record NodeOptions
{
    /// <summary>Any subset of <see cref="Protocol.Roles.All"/>; none for a client that only submits and follows runs.</summary>
    public IReadOnlyList<string> Roles { get; init; } = Protocol.Roles.All;
    /// <summary>The interface remoting binds to; loopback unless the node must be reached from other machines.</summary>
    public string Hostname { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port.</summary>
    public int Port { get; init; }
    /// <summary>host:port of seed nodes; none: the node forms a cluster of its own.</summary>
    public IReadOnlyList<string> SeedNodes { get; init; } = [];
    /// <summary>The runs directory whose record a run manager reads when it starts, to resume runs left running.</summary>
    public string? ResumeFrom { get; init; }
    /// <summary>How long a partition must be stable before the split-brain resolver downs the minority.</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(7);
    /// <summary>How the node finds the cluster: "seeds" (<see cref="SeedNodes"/>) or "kubernetes" (Akka.Management
    /// cluster bootstrap over Akka.Discovery.KubernetesApi: pods labelled app=<see cref="ServiceName"/>).</summary>
    public string Discovery { get; init; } = "seeds";
    public string ServiceName { get; init; } = "metamae";
    /// <summary>Nodes bootstrap waits to see before the first forms a new cluster (kubernetes discovery).</summary>
    public int RequiredContactPoints { get; init; } = 2;
    /// <summary>Akka.Management's HTTP port (cluster bootstrap's contact point), with kubernetes discovery.</summary>
    public int ManagementPort { get; init; } = 8558;
    /// <summary>The ops port: /alive, /ready, /metrics (null: none).</summary>
    public int? OpsPort { get; init; }
    /// <summary>
    /// The data plane's port: a learner replica's (gradients between replicas over TCP) and a data node's batch plane
    /// (batches to learners on other nodes) each take the first free port from this one (16 tried); 0 picks any free port.
    /// </summary>
    public int DataPort { get; init; }

    public static readonly string[] Discoveries = ["seeds", "kubernetes"];

    public const string SystemName = "metamae";

    public static string SeedAddress(string hostPort) =>
        hostPort.Contains("://", StringComparison.Ordinal) ? hostPort : $"akka.tcp://{SystemName}@{hostPort}";

    /// <summary>A node with no role: a command that submits or follows runs (and finds its seed under any of its names).</summary>
    public bool IsClient => Roles.Count == 0;

    public void Validate()
    {
        foreach (var r in Roles)
            if (!Protocol.Roles.All.Contains(r)) throw new ArgumentException($"unknown role '{r}'; roles are {string.Join(", ", Protocol.Roles.All)}");
        if (Port is < 0 or > 65535) throw new ArgumentException($"port {Port} is not a TCP port");
        foreach (var s in SeedNodes)
            if (!s.Contains("://", StringComparison.Ordinal) && (s.Split(':') is not [var h, var p] || h.Length == 0 || !int.TryParse(p, out _)))
                throw new ArgumentException($"seed node '{s}' is not host:port");
        if (!Discoveries.Contains(Discovery)) throw new ArgumentException($"unknown discovery '{Discovery}'; use {string.Join(" or ", Discoveries)}");
        if (Discovery == "kubernetes" && SeedNodes.Count > 0) throw new ArgumentException("--seed-nodes and kubernetes discovery exclude each other");
        if (RequiredContactPoints < 1) throw new ArgumentException($"required contact points must be at least 1, got {RequiredContactPoints}");
        if (OpsPort is < 1 or > 65535) throw new ArgumentException($"ops port {OpsPort} is not a TCP port");
        if (ManagementPort is < 1 or > 65535) throw new ArgumentException($"management port {ManagementPort} is not a TCP port");
        if (DataPort is < 0 or > 65535 - 15) throw new ArgumentException($"data port {DataPort} is not a TCP port (with 15 after it)");
    }
}

/// <summary>
/// Akka.Hosting wiring of a MetaMAE node: remoting on the configured interface, a cluster with its roles and a
/// keep-majority split-brain resolver, DistributedPubSub, the run manager singleton (on coordinator nodes) and its
/// proxy (everywhere), and the hosts of the node's roles, registered with the manager. A one-machine run is a
/// one-node cluster holding every role.
/// </summary>
public static class NodeHosting
{
    /// <summary>Frames up to 128 MiB: a speech batch of 64 log-mel spectrograms is 12.8 MB.</summary>
    public const string Hocon = """
        akka.remote.dot-netty.tcp.maximum-frame-size = 134217728
        akka.cluster.singleton.hand-over-retry-interval = 1s
        akka.stream.materializer.stream-ref.subscription-timeout = 60s
        """;

    public static AkkaConfigurationBuilder WithMetaMaeNode(this AkkaConfigurationBuilder builder, NodeOptions node)
    {
        node.Validate();
        var roles = node.Roles.ToArray();
        builder.WithMetaMaeDispatchers()
            .AddHocon(Hocon + $"\nakka.cluster.split-brain-resolver.stable-after = {(int)node.StableAfter.TotalMilliseconds}ms" +
                      $"\nmetamae.data-plane.port = {node.DataPort}", HoconAddMode.Prepend)
            .WithRemoting(node.Hostname, node.Port)
            .WithClustering(new ClusterOptions
            {
                Roles = roles,
                // A client finds the name its seed answers to first (AwaitJoin) and joins then.
                SeedNodes = node.IsClient ? [] : node.SeedNodes.Select(NodeOptions.SeedAddress).ToArray(),
                SplitBrainResolver = new KeepMajorityOption(),
            })
            .WithDistributedPubSub(null!);
        if (node.Discovery == "kubernetes")
            // Pods find each other through the Kubernetes API (label app=SERVICE) and Akka.Management's HTTP contact points.
            builder.WithAkkaManagement(hostName: node.Hostname, port: node.ManagementPort, bindHostname: "0.0.0.0", bindPort: node.ManagementPort, autoStart: true)
                .WithClusterBootstrap(serviceName: node.ServiceName, requiredContactPoints: node.RequiredContactPoints, autoStart: true)
                .WithKubernetesDiscovery(podLabelSelector: "app={0}");
        // The proxy's "failed to find the singleton" warning fires at start-up and shutdown of every node here; the run
        // manager's own log says when it starts and moves.
        var singleton = new ClusterSingletonOptions { Role = Roles.Coordinator, LogSingletonIdentificationFailure = false };
        if (roles.Contains(Roles.Coordinator))
            builder.WithSingleton<RunManagerActor>(RunManagerActor.Name, RunManagerActor.Props(node.ResumeFrom), singleton, createProxyToo: true);
        else
            builder.WithSingletonProxy<RunManagerActor>(RunManagerActor.Name, singleton);
        return builder.WithActors((system, registry) =>
        {
            // Each host announces itself once (a run submitted at once sees it); the run manager also finds the hosts of
            // every Up member by name from membership events, so a manager that moved knows them without re-registration.
            var manager = registry.Get<RunManagerActor>();
            if (roles.Contains(Roles.Learner)) manager.Tell(new RegisterHost(Roles.Learner, system.ActorOf(Props.Create<LearnerHostActor>(), LearnerHostActor.Name)));
            if (roles.Contains(Roles.Data)) manager.Tell(new RegisterHost(Roles.Data, system.ActorOf(Props.Create<DataHostActor>(), DataHostActor.Name)));
            if (roles.Contains(Roles.Evaluator))
                manager.Tell(new RegisterHost(Roles.Evaluator, system.ActorOf(Props.Create<EvaluatorHostActor>(), EvaluatorHostActor.Name)));
            if (node.SeedNodes.Count == 0 && node.Discovery == "seeds")
            {
                var cluster = Akka.Cluster.Cluster.Get(system);
                cluster.Join(cluster.SelfAddress);
            }
        });
    }

    /// <summary>
    /// Waits until this node is Up, at most <paramref name="timeout"/>; null when it is, else why not. A client
    /// (<paramref name="failFast"/>) whose seeds cannot be reached at all (nothing listens, the name does not resolve)
    /// hears so after a few seconds instead of waiting out the timeout; a node keeps trying, since its seeds may start
    /// after it. When they listen but do not let it join, <paramref name="warn"/> hears the likely cause (a seed named
    /// differently from how that node advertises itself) after 10 s.
    /// </summary>
    public static string? AwaitJoin(ActorSystem system, NodeOptions node, TimeSpan timeout, bool failFast, Action<string>? warn = null)
    {
        var up = WhenUp(system);
        if (node.SeedNodes.Count == 0) return up.Wait(timeout) ? null : $"this node did not form its cluster within {timeout.TotalSeconds:0} s";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var seeds = string.Join(", ", node.SeedNodes);
        TimeSpan Left() => timeout - clock.Elapsed > TimeSpan.Zero ? timeout - clock.Elapsed : TimeSpan.Zero;
        if (node.IsClient)
        {
            var found = FindSeed(system, node.SeedNodes, timeout, failFast);
            if (found.Error is { } error) return error;
            Akka.Cluster.Cluster.Get(system).JoinSeedNodes([found.Address!]);
            return up.Wait(Left()) ? null : $"this node did not join the cluster within {timeout.TotalSeconds:0} s through {found.Address}";
        }
        if (up.Wait(TimeSpan.FromSeconds(Math.Min(10, timeout.TotalSeconds)))) return null;
        warn?.Invoke($"not joined after 10 s: {SeedAddresses.Diagnose(node.SeedNodes, TimeSpan.FromSeconds(2))}");
        if (up.Wait(Left())) return null;
        return $"this node did not join the cluster within {timeout.TotalSeconds:0} s (seed nodes: {seeds}): " +
               SeedAddresses.Diagnose(node.SeedNodes, TimeSpan.FromSeconds(2));
    }

    /// <summary>
    /// The first seed address (under any of its names, <see cref="SeedAddresses.Candidates"/>) whose cluster daemon
    /// answers an Identify, asking one name at a time. After two rounds without an answer (or one, when nothing even
    /// listens and <paramref name="failFast"/>), why not.
    /// </summary>
    private static (Address? Address, string? Error) FindSeed(ActorSystem system, IReadOnlyList<string> seeds, TimeSpan timeout, bool failFast)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int round = 1; clock.Elapsed < timeout; round++)
        {
            foreach (var candidate in seeds.SelectMany(SeedAddresses.Candidates))
            {
                try
                {
                    var identity = system.ActorSelection($"{candidate}/system/cluster/core/daemon")
                        .Ask<ActorIdentity>(new Identify(candidate), TimeSpan.FromSeconds(2)).GetAwaiter().GetResult();
                    if (identity.Subject is not null) return (Address.Parse(candidate), null);
                }
                catch (Exception e) when (e is TaskCanceledException or TimeoutException or AskTimeoutException)
                {
                    // no answer under that name: the next one
                }
            }
            if (failFast && SeedAddresses.Survey(seeds, TimeSpan.FromSeconds(2)) is var survey && (round >= 2 || survey.NoneReachable))
                return (null, $"no MetaMAE node answered at {string.Join(", ", seeds)}: {survey.Text}");
        }
        return (null, $"no MetaMAE node answered at {string.Join(", ", seeds)} within {timeout.TotalSeconds:0} s: " +
                      SeedAddresses.Diagnose(seeds, TimeSpan.FromSeconds(2)));
    }

    /// <summary>Completes when this node is Up in its cluster.</summary>
    public static Task WhenUp(ActorSystem system)
    {
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => up.TrySetResult());
        return up.Task;
    }
}
