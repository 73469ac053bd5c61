using System.Threading.Channels;

namespace OrasStaging.Oci;

public sealed partial class RegistryClient
{
    /// <summary>
    /// The blob as a stream that verifies as it goes: the fetch loop runs ahead on a task of its own and the
    /// stream's last read fails with DigestMismatch if the bytes were wrong. Returns once the first response is in,
    /// so a missing blob or refused credentials fail here rather than on the first read.
    /// </summary>
    public async Task<Stream> OpenBlobAsync(OrasImage image, CancellationToken ct) => await OpenBlobAsync(image, 0, null, ct).ConfigureAwait(false);

    /// <summary>
    /// Bytes [<paramref name="start"/>, Size) of the blob, verified over <paramref name="prefix"/> (the hash of the
    /// bytes before <paramref name="start"/>, which the fetch then owns) and these: a resumed install.
    /// </summary>
    internal async Task<Stream> OpenBlobAsync(OrasImage image, long start, System.Security.Cryptography.IncrementalHash? prefix, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(image);
        var channel = Channel.CreateBounded<PooledChunk>(new BoundedChannelOptions(16)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var written = new ManualResetEventSlim(false, spinCount: 0);
        var producer = Task.Run(async () =>
        {
            try
            {
                await FetchAsync(image, start, prefix,
                    (buffer, count, token) => ChannelFedStream.WriteAndSignal(channel.Writer, new PooledChunk(buffer, count), written, token),
                    rewind: null, () => connected.TrySetResult(), stop.Token).ConfigureAwait(false);
                channel.Writer.TryComplete();
                written.Set();
                connected.TrySetResult();
            }
            catch (Exception ex)
            {
                channel.Writer.TryComplete(ex);
                written.Set();
                connected.TrySetException(ex);
            }
        }, CancellationToken.None);

        try
        {
            await connected.Task.ConfigureAwait(false);
        }
        catch
        {
            stop.Cancel();
            stop.Dispose();
            throw;
        }

        return new VerifiedBlobStream(channel.Reader, stop, producer, image.Size - start, written);
    }
}
