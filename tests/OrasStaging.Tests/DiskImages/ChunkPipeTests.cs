using OrasStaging.DiskImages;

namespace OrasStaging.Tests.DiskImages;

/// <summary>The decoder-to-writer hand-off: order, the producer's failure, and cancellation of a blocked side.</summary>
public class ChunkPipeTests
{
    [Fact]
    public void ChunksArriveInOrderAndThenTheProducersFailure()
    {
        using var pipe = new ChunkPipe(buffers: 2, chunkSize: 16, CancellationToken.None);
        byte[] a = pipe.Rent(), b = pipe.Rent();
        pipe.Publish(a, 3);
        pipe.Publish(b, 5);
        pipe.Complete(new InvalidDataException("corrupt"));

        Assert.True(pipe.Take(out var first));
        Assert.Same(a, first.Buffer);
        Assert.Equal(3, first.Count);
        Assert.True(pipe.Take(out var second));
        Assert.Same(b, second.Buffer);
        var ex = Assert.Throws<InvalidDataException>(() => pipe.Take(out _));
        Assert.Equal("corrupt", ex.Message);
    }

    [Fact]
    public void ACleanEndIsFalse()
    {
        using var pipe = new ChunkPipe(buffers: 1, chunkSize: 16, CancellationToken.None);
        pipe.Complete();
        Assert.False(pipe.Take(out _));
    }

    [Fact]
    public void CancellationWakesAProducerWaitingForAFreeBuffer()
    {
        using var cts = new CancellationTokenSource();
        using var pipe = new ChunkPipe(buffers: 1, chunkSize: 16, cts.Token);
        _ = pipe.Rent();
        Exception? seen = null;
        using var waiting = new ManualResetEventSlim();
        var producer = new Thread(() =>
        {
            waiting.Set();
            try
            {
                pipe.Rent();
            }
            catch (Exception ex)
            {
                seen = ex;
            }
        });
        producer.IsBackground = true;
        producer.Start();
        waiting.Wait();
        cts.Cancel();

        // A hang guard, not a timing: without the wake-up the thread would wait forever.
        Assert.True(producer.Join(TimeSpan.FromSeconds(60)), "the blocked producer was not woken by the cancellation");
        Assert.IsAssignableFrom<OperationCanceledException>(seen);
    }
}
