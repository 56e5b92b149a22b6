using Akka.Actor;
using Akka.Hosting;
using MetaMae.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace MetaMae.Actors.Cluster;

/// <summary>
/// Several ActorSystems on 127.0.0.1 in one process, each a cluster node with its roles, wired as `metamae node` wires
/// them (Akka.Hosting): for specs and the cluster benchmark.
/// </summary>
public sealed class InProcessCluster : IAsyncDisposable
{
    private readonly List<IHost> hosts = [];

    public ActorSystem Seed => System(0);

    public ActorSystem System(int i) => hosts[i].Services.GetRequiredService<ActorSystem>();

    public IActorRef Manager(int i) => hosts[i].Services.GetRequiredService<ActorRegistry>().Get<RunManagerActor>();

    /// <summary>HOCON every node gets (a spec that cuts the network between nodes adds the throttling transport adapter).</summary>
    public string ExtraHocon { get; init; } = "";

    public async Task<int> Add(params string[] roles)
    {
        var seeds = hosts.Count == 0 ? [] : new[] { Akka.Cluster.Cluster.Get(Seed).SelfAddress.ToString() };
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddAkka(NodeOptions.SystemName, akka => akka
            .AddHocon("akka.loglevel = WARNING\nakka.coordinated-shutdown.run-by-clr-shutdown-hook = off\n" + ExtraHocon, HoconAddMode.Prepend)
            .WithMetaMaeNode(new NodeOptions { Roles = roles, SeedNodes = seeds, StableAfter = TimeSpan.FromSeconds(3) }));
        var host = builder.Build();
        await host.StartAsync();
        hosts.Add(host);
        await NodeHosting.WhenUp(host.Services.GetRequiredService<ActorSystem>()).WaitAsync(TimeSpan.FromSeconds(30));
        return hosts.Count - 1;
    }

    /// <summary>Submits a run from node <paramref name="from"/> and waits for its end.</summary>
    public async Task<RunFinished> Run(int from, RunSpec config, string runId, TimeSpan timeout, IActorRef? progress = null)
    {
        var finished = new TaskCompletionSource<RunFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
        var dir = Path.Combine(config.Out, runId);
        System(from).ActorOf(RunClientActor.Props(Manager(from), new SubmitRun(runId, dir, config), progress, finished));
        return await finished.Task.WaitAsync(timeout);
    }

    /// <summary>
    /// Cuts the network between node <paramref name="a"/> and node <paramref name="b"/> both ways (the throttler's
    /// blackhole; the nodes need <c>akka.remote.dot-netty.tcp.applied-adapters = [trttl]</c> in <see cref="ExtraHocon"/>).
    /// </summary>
    public async Task<bool> Partition(int a, int b)
    {
        var transport = ((Akka.Remote.IRemoteActorRefProvider)((ExtendedActorSystem)System(a)).Provider).Transport;
        var address = Akka.Cluster.Cluster.Get(System(b)).SelfAddress;
        return await transport.ManagementCommand(new Akka.Remote.Transport.SetThrottle(address,
            Akka.Remote.Transport.ThrottleTransportAdapter.Direction.Both, Akka.Remote.Transport.Blackhole.Instance));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var h in Enumerable.Reverse(hosts))
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            try
            {
                await h.StopAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                // a node downed by the split-brain resolver may already be gone
            }
            h.Dispose();
        }
    }
}

