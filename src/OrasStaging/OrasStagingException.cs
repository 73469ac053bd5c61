namespace OrasStaging;

/// <summary>
/// Every failure the core reports on purpose. The cmdlet layer turns <see cref="Code"/> into a stable
/// FullyQualifiedErrorId (for example <c>DigestMismatch,OrasStaging.Commands.SaveOrasBlobCommand</c>) and
/// an ErrorCategory, so scripts can branch on the id instead of parsing message text.
/// </summary>
public enum ErrorCode
{
    ReferenceInvalid,
    ManifestNotFound,
    BlobNotFound,
    AuthenticationFailed,
    AccessDenied,
    PlatformAmbiguous,
    NoImageLayer,
    DigestMismatch,
    RegistryUnavailable,
    RegistryProtocolError,
    DestinationExists,
    InvalidTitle,
    UnsupportedFormat,
    CorruptInput,
    QemuImgNotFound,
    QemuImgFailed,
    InsufficientSpace,
    PathNotFound,
    DestinationNotWritable,
    LockTimeout,
    ConfigInvalid,
    InvalidArgument,
    OperationTimeout,

    /// <summary>A write onto a block device needs confirmation and the session cannot ask (non-interactive).</summary>
    ConfirmationRequired,
}

/// <summary>An expected, user-facing failure of the core. Messages never carry secrets.</summary>
public sealed class OrasStagingException : Exception
{
    public OrasStagingException(ErrorCode code, string message, string? recommendedAction = null, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
        RecommendedAction = recommendedAction;
    }

    public ErrorCode Code { get; }

    /// <summary>What the user can do about it; shown as ErrorDetails.RecommendedAction.</summary>
    public string? RecommendedAction { get; }
}
