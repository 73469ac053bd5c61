using OrasStaging.Compression;
using OrasStaging.DiskImages;
using OrasStaging.Oci.Conventions;

namespace OrasStaging.Oci;

/// <summary>
/// The layer search of a KubeVirt containerDisk: the topmost layer that has a regular file under disk/ wins, and a
/// whiteout in a layer above (disk/.wh.&lt;name&gt;, disk/.wh..wh..opq, .wh.disk) hides what the layers below have.
/// Each layer's blob is read only as far as its tar headers need, from the top down; the top layer of a real
/// containerDisk starts with its disk, so this usually costs a few KiB of one GET. The install then streams the
/// chosen layer whole (and checks its digest), taking exactly the member found here.
/// </summary>
public sealed partial class RegistryClient
{
    private async Task<DiskSelection> FindContainerDiskAsync(ImageReference reference, DiskSelection chosen,
        IReadOnlyList<OrasDescriptor> layers, ResolveOptions options, CancellationToken ct)
    {
        if (options.ManifestsOnly)
        {
            return chosen;
        }

        bool overridden = !string.IsNullOrEmpty(options.LayerTitle) || !string.IsNullOrEmpty(options.LayerMediaType);
        var searched = overridden ? new List<OrasDescriptor> { chosen.Layer }
            : layers.Where(l => Selection.IsTarLayer(l.MediaType)).Reverse().ToList();
        var hidden = new Whiteouts();
        var report = new List<string>();
        foreach (var layer in searched)
        {
            var scan = await ScanLayerAsync(reference, layer, hidden, ct).ConfigureAwait(false);
            if (scan is null)
            {
                // Not a tar after all: the writer's format check will say what it is.
                return chosen;
            }

            if (scan.Found is { } member)
            {
                _sink.Verbose($"The containerDisk's disk is {member.MemberPath} ({Units.Bytes(member.MemberSize)}) in layer {Units.ShortDigest(layer.Digest)}"
                    + (layer.Digest == searched[0].Digest ? "." : ", below the top layer."));
                var found = LayerChoice.Describe(layer, null, null);
                return found with { MemberPath = member.MemberPath, DiskFormat = FormatOfName(member.MemberPath) };
            }

            report.Add($"{Units.ShortDigest(layer.Digest)}: "
                + (scan.WhiteoutPaths.Count > 0 ? "deletes " + string.Join(", ", scan.WhiteoutPaths) + "; " : string.Empty)
                + (scan.Seen.Count > 0 ? "holds " + string.Join(", ", scan.Seen) : "empty"));
            hidden.Add(scan.WhiteoutPaths);
        }

        throw new OrasStagingException(ErrorCode.UnsupportedFormat,
            $"{reference} is a container image, but no layer has a regular file under {TarMemberStream.DiskFolder} that a layer above does not delete, "
            + $"so it is not a containerDisk ({string.Join("; ", report)}). Nothing was written.",
            "Check the reference: a containerDisk carries its disk as disk/<name>.qcow2 or .img.");
    }

    /// <summary>Reads one layer's blob as far as the tar headers need; null when it does not decode to a tar.</summary>
    private async Task<TarMemberStream.TarScan?> ScanLayerAsync(ImageReference reference, OrasDescriptor layer, Whiteouts hidden, CancellationToken ct)
    {
        var image = new OrasImage
        {
            Reference = reference.ToString(),
            Registry = reference.Registry,
            Repository = reference.Repository,
            Digest = layer.Digest,
            Size = layer.Size,
            MediaType = layer.MediaType,
        };
        await using var blob = await OpenBlobAsync(image, ct).ConfigureAwait(false);
        return await Task.Run(() =>
        {
            var head = new byte[CompressionDetector.PeekLength];
            int n = blob.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            Array.Resize(ref head, n);
            var kind = CompressionDetector.Detect(head);
            try
            {
                using var decoder = Decoders.Open(kind, new PrefixedStream(head, blob));
                return TarMemberStream.Scan(decoder, hidden);
            }
            catch (Exception ex) when (ex is not OrasStagingException and not OperationCanceledException)
            {
                throw new OrasStagingException(ErrorCode.CorruptInput,
                    $"Layer {Units.ShortDigest(layer.Digest)} of {reference} does not decode as {kind}: {ex.Message}",
                    "Try again; if it persists, the published layer is damaged.", ex);
            }
        }, ct).ConfigureAwait(false);
    }

    /// <summary>"qcow2" for disk/fedora.qcow2, "raw" for .img/.raw; null when the name does not say (the bytes will).</summary>
    private static string? FormatOfName(string path)
    {
        string ext = System.IO.Path.GetExtension(path).TrimStart('.').ToLowerInvariant();
        return ext switch
        {
            "qcow2" => "qcow2",
            "img" or "raw" => "raw",
            "vmdk" or "vhd" or "vhdx" or "iso" => ext,
            _ => null,
        };
    }
}
