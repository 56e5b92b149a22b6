using System.CommandLine;
using System.Runtime.InteropServices;
using Akka.Actor;
using MetaMae.Actors.Cluster;
using MetaMae.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace MetaMae.Cli.Commands;

/// <summary>`metamae node`: a long-lived cluster node hosting any subset of the roles, until SIGTERM or Ctrl-C.</summary>
public static class NodeCommand
{
    public static Command Create()
    {
        var roles = new Option<string>("--roles") { Description = "Comma-separated: coordinator, learner, data, evaluator.", DefaultValueFactory = _ => string.Join(",", Roles.All) };
        var hostname = new Option<string>("--hostname") { Description = "Interface to bind and advertise (loopback unless other machines must reach it).", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port).", DefaultValueFactory = _ => 0 };
        var seeds = new Option<string?>("--seed-nodes") { Description = "Comma-separated host:port of nodes to join; none: start a new cluster." };
        var resume = new Option<string?>("--resume-from") { Description = "Runs directory (shared) whose runs recorded as running a coordinator resumes when it takes over." };
        var discovery = new Option<string>("--discovery") { Description = "seeds (--seed-nodes) or kubernetes (Akka.Management cluster bootstrap, pods labelled app=SERVICE).", DefaultValueFactory = _ => "seeds" };
        var service = new Option<string>("--service-name") { Description = "The app label pods share (kubernetes discovery).", DefaultValueFactory = _ => "metamae" };
        var contacts = new Option<int>("--required-contact-points") { Description = "Pods bootstrap waits to see before forming a new cluster.", DefaultValueFactory = _ => 2 };
        var management = new Option<int>("--management-port") { Description = "Akka.Management HTTP port (kubernetes discovery).", DefaultValueFactory = _ => 8558 };
        var ops = new Option<int?>("--ops-port") { Description = "Serve /alive, /ready and /metrics (Prometheus) on this port." };
        var dataPort = new Option<int>("--data-port")
        {
            Description = "The data plane's TCP port (learner nodes: gradients between replicas; data nodes: batches to learners), the first free of 16 from it (0: any free port).",
            DefaultValueFactory = _ => 0,
        };
        var logFormat = new Option<string>("--log-format") { Description = "text, or json: one JSON object per log event.", DefaultValueFactory = _ => "text" };
        logFormat.AcceptOnlyFromAmong("text", "json");
        var cmd = new Command("node", "Run a cluster node with the given roles until SIGTERM (it then leaves the cluster gracefully).")
            { roles, hostname, port, seeds, resume, discovery, service, contacts, management, ops, dataPort, logFormat };
        cmd.SetAction(p =>
        {
            var options = new NodeOptions
            {
                Roles = p.GetValue(roles)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                Hostname = p.GetValue(hostname)!,
                Port = p.GetValue(port),
                SeedNodes = p.GetValue(seeds)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [],
                ResumeFrom = p.GetValue(resume) is { } r ? Path.GetFullPath(r) : null,
                Discovery = p.GetValue(discovery)!, ServiceName = p.GetValue(service)!, RequiredContactPoints = p.GetValue(contacts),
                ManagementPort = p.GetValue(management), OpsPort = p.GetValue(ops), DataPort = p.GetValue(dataPort),
            };
            options.Validate();
            bool json = p.GetValue(logFormat) == "json";
            if (json) Console.SetOut(new JsonLinesWriter(Console.Out));
            return Run(options, json);
        });
        return cmd;
    }

    private static int Run(NodeOptions options, bool jsonLogs)
    {
        using var host = RunHost.StartNode(options, jsonLogs);
        var system = host.Services.GetRequiredService<ActorSystem>();
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnSignal(PosixSignalContext c)
        {
            c.Cancel = true;
            stop.TrySetResult();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        var self = Akka.Cluster.Cluster.Get(system).SelfAddress;
        // A node another member has quarantined can never talk to it again (Akka: restart the system): say so and exit,
        // for the node's supervisor to start a fresh one, instead of waiting out the join or lingering half-connected.
        var quarantined = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        system.ActorOf(Akka.Actor.Props.Create(() => new QuarantineWatch(quarantined)), "quarantine-watch");
        var joining = Task.Run(() => options.Discovery == "kubernetes"
            ? NodeHosting.WhenUp(system).Wait(TimeSpan.FromSeconds(120)) ? null : $"did not join the cluster within 120 s (kubernetes discovery of app={options.ServiceName})"
            : NodeHosting.AwaitJoin(system, options, TimeSpan.FromSeconds(120), failFast: false, w => Console.Error.WriteLine($"warning: {w}")));
        if (Task.WhenAny(joining, quarantined.Task, stop.Task).GetAwaiter().GetResult() == quarantined.Task)
            return ExitQuarantined(host, self, quarantined.Task.Result);
        if (!stop.Task.IsCompleted && joining.GetAwaiter().GetResult() is { } notJoined)
        {
            Console.Error.WriteLine($"error: node {self}: {notJoined}");
            host.StopAsync().Wait(TimeSpan.FromSeconds(10));
            return ExitCodes.Failed;
        }
        // One line a script or a test can wait for (a JSON log event with --log-format json).
        var logger = host.Services.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>().CreateLogger("MetaMae.Node");
        void Say(string line)
        {
            if (jsonLogs) Microsoft.Extensions.Logging.LoggerExtensions.LogInformation(logger, "{Line}", line);
            else Console.WriteLine(line);
        }
        Say($"node up: {self} roles {string.Join(",", options.Roles)}");
        var removed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberRemoved(() => removed.TrySetResult());
        Task.WhenAny(stop.Task, system.WhenTerminated, removed.Task, quarantined.Task).GetAwaiter().GetResult();
        if (quarantined.Task.IsCompleted && !stop.Task.IsCompleted)
            Console.Error.WriteLine($"node {self} was quarantined by {quarantined.Task.Result}");
        if (stop.Task.IsCompleted)
        {
            Say("node leaving the cluster");
            host.StopAsync().Wait(TimeSpan.FromSeconds(30)); // CoordinatedShutdown: leave gracefully, hand the singleton over
            return 0;
        }
        return ExitRemoved(host, self, Say);
    }

    private static int ExitQuarantined(IHost host, Akka.Actor.Address self, string by)
    {
        Console.Error.WriteLine($"error: node {self} was quarantined by {by}, which will never accept it again; exiting for its supervisor to start a fresh one");
        return ExitFailed(host);
    }

    /// <summary>Completes its task with the remote address when another system quarantines this one.</summary>
    private sealed class QuarantineWatch : Akka.Actor.ReceiveActor
    {
        public QuarantineWatch(TaskCompletionSource<string> quarantined)
        {
            Context.System.EventStream.Subscribe(Self, typeof(Akka.Remote.ThisActorSystemQuarantinedEvent));
            Receive<Akka.Remote.ThisActorSystemQuarantinedEvent>(e => quarantined.TrySetResult(e.RemoteAddress.ToString()));
        }
    }

    /// <summary>
    /// The cluster removed this node without being asked (downed by the split-brain resolver after a pause or a
    /// partition, or the system stopped under it): a node outside the cluster serves nobody, so it exits non-zero
    /// within seconds for its supervisor (compose, Kubernetes, systemd) to start it again, rather than linger as a
    /// zombie. A learner thread stuck in a step, or a shutdown that does not finish, cannot keep it up: after a
    /// bounded try the process ends with <see cref="Environment.Exit"/>, which waits for no foreground thread.
    /// </summary>
    private static int ExitRemoved(IHost host, Akka.Actor.Address self, Action<string> say)
    {
        say($"node removed from the cluster: {self} is no longer a member (downed after a pause or a partition); exiting");
        return ExitFailed(host);
    }

    /// <summary>Stops the node for at most 5 s, then ends the process non-zero whatever still runs.</summary>
    private static int ExitFailed(IHost host)
    {
        var stopped = host.StopAsync().Wait(TimeSpan.FromSeconds(5));
        if (!stopped) Console.Error.WriteLine("warning: the actor system did not stop within 5 s; exiting without it");
        Console.Out.Flush();
        Console.Error.Flush();
        Environment.Exit(ExitCodes.Failed);
        return ExitCodes.Failed;
    }
}
