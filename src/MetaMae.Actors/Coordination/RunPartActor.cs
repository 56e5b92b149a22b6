using Akka.Actor;

namespace MetaMae.Actors.Coordination;

/// <summary>
/// Base of a run's coordinator and its children: an exception in any handler fails the run through the actor's own
/// <see cref="Fail"/>, naming the <see cref="Stage"/> it happened in. Nothing is restarted (a restarted part would
/// forget the run's state).
/// </summary>
internal abstract class RunPartActor : ReceiveActor
{
    /// <summary>What the actor is doing, named in the error when it fails there.</summary>
    protected string Stage { get; set; } = "starting";

    /// <summary>Ends (or has the parent end) the run, failed, with <paramref name="reason"/>.</summary>
    protected abstract void Fail(string reason);

    protected override bool AroundReceive(Receive receive, object message)
    {
        try
        {
            return base.AroundReceive(receive, message);
        }
        catch (Exception e)
        {
            Fail($"{Stage} failed: {Failures.Describe(e)}");
            return true;
        }
    }
}
