using System.Net;
using System.Text;
using System.Text.Json;

namespace OrasStaging.Oci;

public sealed partial class RegistryClient
{
    internal sealed record ManifestBody(byte[] Body, string MediaType, string Digest);

    /// <summary>A tag at the sources that may resolve tags (the origin by default); a digest at mirrors first.</summary>
    private Task<ManifestBody> FetchManifestAsync(ImageReference reference, string tagOrDigest, string? expectedDigest, CancellationToken ct) =>
        AcrossAsync(reference, expectedDigest is null ? Mirrors.SourceRoles.ResolveTag : Mirrors.SourceRoles.Manifest,
            at => FetchManifestAtAsync(at, tagOrDigest, expectedDigest, ct), ct);

    private async Task<ManifestBody> FetchManifestAtAsync(Mirrors.SourceEndpoint at, string tagOrDigest, string? expectedDigest, CancellationToken ct)
    {
        var reference = at.Reference;
        string what = expectedDigest is null ? $"manifest {tagOrDigest}" : $"manifest {Units.ShortDigest(tagOrDigest)}";
        var request = Request(HttpMethod.Get, at, $"/manifests/{tagOrDigest}", what) with { Accept = ManifestTypes };
        using var response = await at.Transport.SendAsync(request, ct).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw await at.Transport.ErrorFromAsync(response, request, ErrorCode.ManifestNotFound, ct).ConfigureAwait(false);
        }

        byte[] body = await RegistryTransport.ReadCappedAsync(response.Content, MaxManifestBytes, "manifest", ct).ConfigureAwait(false);
        string? header = response.Headers.TryGetValues("Docker-Content-Digest", out var values) ? values.FirstOrDefault()?.Trim() : null;
        if (header is not null)
        {
            if (!Digest.IsValid(header))
            {
                throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                    $"{reference.Registry} sent an unusable Docker-Content-Digest for {what}.");
            }

            string actual = Digest.Compute(header, body);
            if (!Digest.AreEqual(actual, header))
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch,
                    $"The {what} from {reference.Registry} hashes to {actual}, but the registry said {header}.",
                    "Try again; if it persists, the registry or a proxy is corrupting responses.");
            }
        }

        if (expectedDigest is not null)
        {
            string actual = Digest.Compute(expectedDigest, body);
            if (!Digest.AreEqual(actual, expectedDigest))
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch,
                    $"The {what} from {reference.Registry} hashes to {actual}, not to the digest asked for.",
                    "Try again; if it persists, the registry or a proxy is corrupting responses.");
            }
        }
        else if (header is null)
        {
            _sink.Verbose($"{reference.Registry} sent no Docker-Content-Digest for {what}; using the body's sha256.");
        }

        string digest = expectedDigest ?? header ?? Digest.Compute(Digest.Sha256Prefix, body);
        string? contentType = response.Content.Headers.ContentType?.MediaType;
        string? bodyType = null;
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("mediaType", out var mt) && mt.ValueKind == JsonValueKind.String)
            {
                bodyType = mt.GetString();
            }
        }
        catch (JsonException)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"The {what} from {reference.Registry} is not JSON.");
        }

        string? mediaType = contentType is not null && ManifestTypes.Contains(contentType) ? contentType : bodyType ?? contentType;
        if (bodyType is not null && mediaType is not null && ManifestTypes.Contains(bodyType) && bodyType != mediaType)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"The {what} from {reference.Registry} says it is {Redaction.Untrusted(bodyType)}, but was served as {Redaction.Untrusted(mediaType)}.");
        }

        if (mediaType is null || !ManifestTypes.Contains(mediaType))
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"The {what} from {reference.Registry} has the media type '{(mediaType is null ? "(none)" : Redaction.Untrusted(mediaType))}', which is not an OCI or Docker v2 manifest or index.");
        }

        return new ManifestBody(body, mediaType, digest);
    }

    private async Task<OrasImage> FromManifestAsync(ImageReference reference, ManifestBody manifest, PinnedKind pinned, ResolveOptions options,
        CancellationToken ct)
    {
        var (chosen, facts) = await ChooseLayerAsync(reference, manifest, options, ct).ConfigureAwait(false);
        return NewImage(reference, pinned, chosen.Digest, chosen.Size, chosen, facts);
    }

    /// <summary>Through an index to the platform's manifest, then to one layer (<paramref name="chooseDigest"/>'s if given).</summary>
    private async Task<(OrasDescriptor Chosen, ManifestFacts Facts)> ChooseLayerAsync(ImageReference reference, ManifestBody manifest,
        ResolveOptions options, CancellationToken ct, string? chooseDigest = null)
    {
        string? platform = null;
        if (manifest.MediaType is OciIndex or DockerList)
        {
            var entries = ParseIndex(manifest.Body);
            var entry = Selection.ChoosePlatform(entries, options.Platform, Selection.HostOs(), Selection.HostArchitecture(), reference.ToString());
            platform = entry.Platform;
            _sink.Verbose($"{reference} is an index; taking {entry.Platform} ({Units.ShortDigest(entry.Digest)}).");
            manifest = await FetchManifestAsync(reference, entry.Digest, entry.Digest, ct).ConfigureAwait(false);
            if (manifest.MediaType is OciIndex or DockerList)
            {
                throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                    $"The {entry.Platform} entry of {reference} is another index; nested indexes are not supported.");
            }
        }

        var (layers, artifactType, annotations) = ParseManifest(manifest.Body, manifest.MediaType);
        OrasDescriptor chosen = chooseDigest is not null && layers.FirstOrDefault(l => Digest.AreEqual(l.Digest, chooseDigest)) is { } pinnedLayer
            ? pinnedLayer
            : Selection.ChooseLayer(layers, options.LayerTitle, options.LayerMediaType, reference.ToString());
        if (chooseDigest is null && !options.ManifestsOnly)
        {
            await CrossCheckSidecarAsync(reference, chosen, layers, ct).ConfigureAwait(false);
        }

        return (chosen, new ManifestFacts(manifest.Digest, artifactType, annotations, layers, platform));
    }

    /// <summary>When the manifest carries "&lt;title&gt;.sha256", its first word must be the layer digest's hex.</summary>
    private async Task CrossCheckSidecarAsync(ImageReference reference, OrasDescriptor chosen, List<OrasDescriptor> layers, CancellationToken ct)
    {
        if (chosen.Title is null || !chosen.Digest.StartsWith(Digest.Sha256Prefix, StringComparison.Ordinal))
        {
            return;
        }

        var sidecar = layers.FirstOrDefault(l => l.Title == chosen.Title + ".sha256");
        if (sidecar is null || sidecar.Size > 64 * 1024)
        {
            return;
        }

        string text;
        try
        {
            // A blob like the layer: from the mirrors first, so a warm mirror spares the origin every blob request.
            byte[]? body = await AcrossAsync(reference, Mirrors.SourceRoles.Blob, async at =>
            {
                var request = Request(HttpMethod.Get, at, $"/blobs/{sidecar.Digest}", $"sidecar {sidecar.Title}");
                using var response = await at.Transport.SendAsync(request, ct).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                {
                    if (!at.IsOrigin)
                    {
                        throw await at.Transport.ErrorFromAsync(response, request, ErrorCode.BlobNotFound, ct).ConfigureAwait(false);
                    }

                    _sink.Warning($"Could not fetch the checksum sidecar {sidecar.Title} (HTTP {(int)response.StatusCode}); relying on the layer digest alone.");
                    return null;
                }

                return await RegistryTransport.ReadCappedAsync(response.Content, 64 * 1024, "checksum sidecar", ct).ConfigureAwait(false);
            }, ct).ConfigureAwait(false);
            if (body is null)
            {
                return;
            }

            if (!Digest.AreEqual(Digest.Compute(sidecar.Digest, body), sidecar.Digest))
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch, $"The checksum sidecar {sidecar.Title} does not match its own digest.");
            }

            text = Encoding.UTF8.GetString(body);
        }
        catch (OrasStagingException ex) when (ex.Code is ErrorCode.RegistryUnavailable or ErrorCode.RegistryProtocolError)
        {
            _sink.Warning($"Could not fetch the checksum sidecar {sidecar.Title}: {ex.Message}");
            return;
        }

        string first = text.Trim().Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? string.Empty;
        string expected = chosen.Digest[Digest.Sha256Prefix.Length..];
        if (first.Length != 64 || !first.All(Uri.IsHexDigit))
        {
            _sink.Warning($"The checksum sidecar {sidecar.Title} does not start with a sha256 hex digest; ignoring it.");
            return;
        }

        if (!first.Equals(expected, StringComparison.OrdinalIgnoreCase))
        {
            throw new OrasStagingException(ErrorCode.DigestMismatch,
                $"The checksum sidecar {sidecar.Title} says sha256:{first.ToLowerInvariant()}, but the manifest gives {chosen.Title} the digest {chosen.Digest}.",
                "The artifact was published inconsistently; tell its publisher.");
        }

        _sink.Verbose($"The sidecar {sidecar.Title} agrees with the layer digest.");
    }
}
