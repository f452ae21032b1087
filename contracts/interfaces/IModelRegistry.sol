// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice A model variant is named by the keccak256 hash of its manifest: the architecture config,
///         each tensor's hash and the compression applied. Servers, verifiers and clients all speak
///         of that id; serving other weights than the registered manifest is cheating by definition.
type VariantId is bytes32;

/// @title Model registry
/// @notice Records which model variants the network serves: manifest hash, number of transformer
///         layers and where the manifest can be fetched. Only REGISTRAR_ROLE registers variants:
///         a manifest hash is public, so an open registry would let anyone claim it first with a
///         wrong layer count and block every honest server. Governance can retire a variant; a
///         retired variant accepts no new server registrations.
interface IModelRegistry {
    struct Variant {
        /// @dev Number of transformer layers; servers cover sub-ranges of [0, numLayers).
        uint16 numLayers;
        /// @dev True once governance retired the variant.
        bool retired;
        /// @dev Block timestamp of registration.
        uint64 registeredAt;
        /// @dev Who registered it.
        address registrant;
        /// @dev Where the manifest can be fetched (any URI scheme: https, ipfs, file).
        string manifestURI;
    }

    /// @notice The manifest hash must not be zero.
    error RegistryZeroVariantId();
    /// @notice A variant must have at least one layer.
    error RegistryZeroLayers();
    /// @notice The manifest URI must not be empty, nor longer than `maxLength` bytes.
    error RegistryBadManifestURI(uint256 length, uint256 maxLength);
    /// @notice `id` is already registered.
    error RegistryVariantExists(VariantId id);
    /// @notice `id` was never registered.
    error RegistryUnknownVariant(VariantId id);
    /// @notice `id` is retired.
    error RegistryVariantRetired(VariantId id);

    /// @notice Emitted when a variant is registered.
    event VariantRegistered(VariantId indexed id, address indexed registrant, uint16 numLayers, string manifestURI);
    /// @notice Emitted when governance retires a variant.
    event VariantRetired(VariantId indexed id);

    /// @notice Registers a variant by its manifest hash. Only REGISTRAR_ROLE, which checks the
    ///         manifest (layer count, URI) first; registering gives no rights over the variant.
    function registerVariant(VariantId id, uint16 numLayers, string calldata manifestURI) external;

    /// @notice Retires a variant. Only governance.
    function retireVariant(VariantId id) external;

    /// @notice The variant record; reverts `RegistryUnknownVariant` if unknown.
    function variant(VariantId id) external view returns (Variant memory);

    /// @notice True when `id` is registered and not retired.
    function isActive(VariantId id) external view returns (bool);

    /// @notice Number of variants ever registered.
    function variantCount() external view returns (uint256);

    /// @notice Variant ids in registration order, `limit` of them from `offset` (clamped to the end).
    function variantIds(uint256 offset, uint256 limit) external view returns (VariantId[] memory);
}
