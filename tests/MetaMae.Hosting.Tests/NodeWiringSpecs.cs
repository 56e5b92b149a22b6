using Akka.Actor;
using Akka.Hosting;
using MetaMae.Actors.Cluster;
using MetaMae.Protocol;

namespace MetaMae.Hosting.Tests;

/// <summary>
/// The production wiring of a node, as `metamae node` and `metamae run` build it with Akka.Hosting, under
/// Akka.Hosting.TestKit: one serializer bound through the marker interface, a one-node cluster holding every role, the
/// run manager singleton in the registry, and a run submitted to it that completes.
/// </summary>
public sealed class NodeWiringSpecs : Akka.Hosting.TestKit.TestKit
{
    private readonly string root = Directory.CreateTempSubdirectory("metamae-hosted-").FullName;

    public NodeWiringSpecs() : base(NodeOptions.SystemName) { }

    protected override void ConfigureAkka(AkkaConfigurationBuilder builder, IServiceProvider provider) =>
        builder.WithMetaMaeNode(new NodeOptions());

    [Fact]
    public async Task A_node_binds_the_serializer_forms_its_cluster_and_runs_a_run_submitted_to_its_manager()
    {
        foreach (var message in new object[] { StartRun.Instance, FeedAck.Instance, new StreamPosition(1, 2), ListRuns.Instance })
            Assert.IsType<MetaMaeSerializer>(((ExtendedActorSystem)Sys).Serialization.FindSerializerFor(message));
        await NodeHosting.WhenUp(Sys).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        var manager = ActorRegistry.Get<RunManagerActor>();
        var spec = new RunSpec
        {
            Name = "hosted", Dataset = new DatasetRef { Name = "fashion-mnist", Root = "embedded" }, Preset = "tiny", Steps = 4, BatchSize = 16,
            CheckpointEvery = 2, Device = "cpu", Threads = 1, DataParallelism = 2, Out = root,
        };
        manager.Tell(new SubmitRun("hosted", Path.Combine(root, "hosted"), spec), TestActor);
        await ExpectMsgAsync<RunAccepted>(TimeSpan.FromSeconds(30), cancellationToken: TestContext.Current.CancellationToken);
        var finished = await FishForMessageAsync<RunFinished>(_ => true, TimeSpan.FromMinutes(2), cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(finished.Status == RunStatus.Completed, finished.Error);
        Assert.Equal(4, finished.Step);
        manager.Tell(ListRuns.Instance, TestActor);
        var list = await ExpectMsgAsync<RunList>(TimeSpan.FromSeconds(30), cancellationToken: TestContext.Current.CancellationToken);
        Assert.NotNull(list.Error); // this node was started without --resume-from: it says so rather than listing nothing
    }

    protected override async Task AfterAllAsync()
    {
        await base.AfterAllAsync();
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }
}
